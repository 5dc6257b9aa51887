#pragma once

// The Keras progress bar. On a terminal, one line redrawn in place (at most every 50 ms):
//   " 357/1875 ━━━━━━━━━━━━━━━━━━━━ 1s 2ms/step - loss: 0.6183 - accuracy: 0.7851"
// with the ETA while running and the epoch's time when done. Anywhere else, one line per
// epoch:
//   "Epoch 1/5 - 1875/1875 - 3.2s - 1.7ms/step - loss: 0.4995 - accuracy: 0.8236"

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

namespace kiln::nn {

using Logs = std::vector<std::pair<std::string, double>>;

// " - loss: 0.4995 - accuracy: 0.8236"
std::string format_logs(const Logs& logs);
// "850us", "1.7ms", "3.2s", "2m05s"
std::string format_duration(double seconds);

class ProgressBar {
 public:
  // total: steps per epoch (-1 when unknown). now: seconds on a monotonic clock (tests pass
  // their own).
  ProgressBar(std::ostream& out, bool interactive, int64_t total, std::function<double()> now = {});
  void start_epoch(int epoch, int epochs);  // epoch counted from 0
  // After step `step` (from 1) of the epoch; redraws when interactive and due.
  void update(int64_t step, const std::function<Logs()>& logs);
  // The epoch's final line.
  void finish(int64_t steps, const Logs& logs);

  static bool stdout_is_terminal();

 private:
  std::string bar_line(int64_t step, double elapsed, bool done, const Logs& logs) const;
  std::ostream& out_;
  bool interactive_;
  int64_t total_;
  std::function<double()> now_;
  int epoch_ = 0, epochs_ = 1;
  double start_ = 0, last_draw_ = -1, first_step_ = -1;
};

}  // namespace kiln::nn
