// jit_fuzz: runs the JIT's differential fuzzer (test/jit_fuzz_check.h) for a while.
//   jit_fuzz MINUTES [FIRST_SEED]
// Runs seeds FIRST_SEED (default: the clock's seconds times 1000, so each run explores new
// programs), FIRST_SEED+1, ... until the time is up; prints each defect (the seed,
// the program and its reduction with their optimized IR), then the number of programs run and
// the failing seeds. Exits 1 when it found a defect. A crash prints the seed it happened on.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

#include <unistd.h>

#include "jit_fuzz_check.h"

namespace {

volatile uint64_t g_seed = 0;

void on_crash(int sig) {
  char buf[96];
  const int n = std::snprintf(buf, sizeof buf, "\njit_fuzz: signal %d on seed %llu\n", sig,
                              static_cast<unsigned long long>(g_seed));
  if (n > 0) (void)!::write(2, buf, static_cast<size_t>(n));
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: jit_fuzz MINUTES [FIRST_SEED]\n");
    return 2;
  }
  const double minutes = std::atof(argv[1]);
  const uint64_t first =
      argc > 2 ? std::strtoull(argv[2], nullptr, 10)
               : static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                           std::chrono::system_clock::now().time_since_epoch())
                                           .count()) *
                     1000;
  std::printf("jit_fuzz: %g minutes from seed %llu\n", minutes,
              static_cast<unsigned long long>(first));
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT})
    std::signal(sig, on_crash);
  using clock = std::chrono::steady_clock;
  const auto end = clock::now() + std::chrono::duration<double>(minutes * 60);
  uint64_t runs = 0, invalid = 0, ill_conditioned = 0;
  std::vector<uint64_t> failing;
  std::set<std::string> errors;
  for (uint64_t seed = first; clock::now() < end; ++seed) {
    g_seed = seed;
    const kiln::fuzz::Program p = kiln::fuzz::generate(seed);
    ++runs;
    try {
      const kiln::fuzz::Outcome o = kiln::fuzz::run(p);
      if (o.verdict == kiln::fuzz::Verdict::ok && !o.message.empty()) {
        ++ill_conditioned;  // the f64 check found the interpreter as far off
      } else if (o.verdict == kiln::fuzz::Verdict::reference_error) {
        ++invalid;
        std::printf("seed %llu: invalid program (the interpreter raised): %s\n%s\n",
                    static_cast<unsigned long long>(seed), o.message.c_str(),
                    kiln::fuzz::to_string(p).c_str());
      } else if (o.defect()) {
        failing.push_back(seed);
        // An error already reported is listed, not reduced again (mismatches always are).
        const std::string key = o.message.substr(o.message.find(':') + 1);
        if (o.verdict == kiln::fuzz::Verdict::compiled_error && !errors.insert(key).second)
          std::printf("==== seed %llu: compiled error seen before:%s\n",
                      static_cast<unsigned long long>(seed), key.c_str());
        else
          std::printf("==== defect\n%s\n", kiln::fuzz::reduce_and_report(p, o).c_str());
      }
    } catch (const std::exception& e) {
      ++invalid;
      std::printf("seed %llu: generator error: %s\n%s\n", static_cast<unsigned long long>(seed),
                  e.what(), kiln::fuzz::to_string(p).c_str());
    }
    std::fflush(stdout);
  }
  std::string seeds;
  for (uint64_t s : failing)
    seeds += fmt::format(" {}", s);
  std::printf(
      "jit_fuzz: %llu programs run (seeds %llu..%llu), %zu defects, %llu invalid, %llu "
      "ill-conditioned differences (not defects)%s%s\n",
      static_cast<unsigned long long>(runs), static_cast<unsigned long long>(first),
      static_cast<unsigned long long>(first + runs - 1), failing.size(),
      static_cast<unsigned long long>(invalid), static_cast<unsigned long long>(ill_conditioned),
      failing.empty() ? "" : "; failing seeds:", seeds.c_str());
  return failing.empty() && invalid == 0 ? 0 : 1;
}
