#include <kiln/nn/progress.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ostream>

#include <fmt/format.h>

namespace kiln::nn {

std::string format_logs(const Logs& logs) {
  std::string s;
  for (const auto& [name, value] : logs)
    s += fmt::format(" - {}: {:.4f}", name, value);
  return s;
}

std::string format_duration(double seconds) {
  if (seconds < 1e-3) return fmt::format("{:.0f}us", seconds * 1e6);
  if (seconds < 1) return fmt::format("{:.{}f}ms", seconds * 1e3, seconds < 0.01 ? 1 : 0);
  if (seconds < 60) return fmt::format("{:.{}f}s", seconds, seconds < 10 ? 1 : 0);
  const auto whole = static_cast<int64_t>(std::lround(seconds));
  return fmt::format("{}m{:02}s", whole / 60, whole % 60);
}

ProgressBar::ProgressBar(std::ostream& out, bool interactive, int64_t total,
                         std::function<double()> now)
    : out_(out), interactive_(interactive), total_(total), now_(std::move(now)) {
  if (!now_) {
    now_ = [] {
      using clock = std::chrono::steady_clock;
      return std::chrono::duration<double>(clock::now().time_since_epoch()).count();
    };
  }
}

bool ProgressBar::stdout_is_terminal() {
  return isatty(fileno(stdout)) != 0;
}

void ProgressBar::start_epoch(int epoch, int epochs) {
  epoch_ = epoch;
  epochs_ = epochs;
  start_ = now_();
  last_draw_ = -1;
  first_step_ = -1;
  if (interactive_) out_ << fmt::format("Epoch {}/{}\n", epoch + 1, epochs) << std::flush;
}

std::string ProgressBar::bar_line(int64_t step, double elapsed, bool done, const Logs& logs) const {
  constexpr int kWidth = 20;
  const int64_t total = total_ > 0 ? total_ : step;
  const int digits = static_cast<int>(fmt::format("{}", total).size());
  const int filled = total > 0 ? static_cast<int>(kWidth * std::min(step, total) / total) : 0;
  std::string bar;
  for (int i = 0; i < kWidth; ++i)
    bar += "\u2501";  // ━
  // Colour the done part green and the rest grey (ANSI), as Keras does.
  const size_t cut = static_cast<size_t>(filled) * 3;  // ━ is three bytes in UTF-8
  const std::string coloured =
      "\x1b[32m" + bar.substr(0, cut) + "\x1b[0m\x1b[37m" + bar.substr(cut) + "\x1b[0m";
  // While running, the rate leaves out the first step (which often traces and compiles);
  // the final line reports the epoch's true time per step.
  double per_step = step > 0 ? elapsed / static_cast<double>(step) : 0;
  if (!done && step > 1 && first_step_ >= 0)
    per_step = (elapsed - first_step_) / static_cast<double>(step - 1);
  const double shown = done ? elapsed : per_step * static_cast<double>(total - step);
  return fmt::format("\r\x1b[1m{:>{}}/{}\x1b[0m {} \x1b[1m{}\x1b[0m {}/step{}\x1b[K", step, digits,
                     total, coloured, format_duration(shown), format_duration(per_step),
                     format_logs(logs));
}

void ProgressBar::update(int64_t step, const std::function<Logs()>& logs) {
  if (!interactive_) return;
  const double t = now_();
  if (step == 1) first_step_ = t - start_;
  if (last_draw_ >= 0 && t - last_draw_ < 0.05 && step != total_) return;
  last_draw_ = t;
  out_ << bar_line(step, t - start_, false, logs()) << std::flush;
}

void ProgressBar::finish(int64_t steps, const Logs& logs) {
  const double elapsed = now_() - start_;
  if (interactive_) {
    out_ << bar_line(steps, elapsed, true, logs) << "\n" << std::flush;
    return;
  }
  const double per_step = steps > 0 ? elapsed / static_cast<double>(steps) : 0;
  out_ << fmt::format("Epoch {}/{} - {}/{} - {} - {}/step{}\n", epoch_ + 1, epochs_, steps,
                      total_ > 0 ? total_ : steps, format_duration(elapsed),
                      format_duration(per_step), format_logs(logs))
       << std::flush;
}

}  // namespace kiln::nn
