#pragma once

// backends/cpu/: eager CPU kernels, oneDNN wrappers and the thread pool. Nothing in core/
// includes this folder: kernels reach the registry through KILN_STATIC_INIT blocks.

#include <algorithm>
#include <cstdint>
#include <utility>

#include <omp.h>

#include <kiln/core/float_mode.h>

namespace kiln::cpu {

// Threads Kiln uses: KILN_NUM_THREADS, else every core. Set once at load time, before oneDNN
// sizes its own use of the same OpenMP runtime.
int num_threads();

// Whether this thread is inside a SerialScope.
inline thread_local bool t_serial = false;

// Within a SerialScope, this thread's parallel_for runs inline and the oneDNN calls it makes
// use one thread (they read OpenMP's setting): for work too small to pay for the other
// threads. On the 2-core VMs an empty parallel region costs 0.45-1 us, and in their slow
// phases a [128, 128]^T x [128, 10] product took 6.7-7.0 us split over both threads against
// 3.9 us on one.
class SerialScope {
 public:
  SerialScope() : saved_(omp_get_max_threads()), was_(t_serial) {
    omp_set_num_threads(1);
    t_serial = true;
  }
  ~SerialScope() {
    omp_set_num_threads(saved_);
    t_serial = was_;
  }
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  int saved_;
  bool was_;
};

// Thread t's block of [0, n) split among nt threads: blocks of ceil(n / nt), the last one
// shorter (or empty). parallel_for, the JIT's product epilogues and
// RowBlockProduct::split_contraction all split this way, so that a block of a weight's rows
// is read and written by the same thread from one step to the next.
inline std::pair<int64_t, int64_t> split_rows(int64_t n, int64_t nt, int64_t t) {
  const int64_t chunk = (n + nt - 1) / nt;
  return {std::min(n, t * chunk), std::min(n, (t + 1) * chunk)};
}

// Runs fn(begin, end) over [0, n) split into contiguous chunks across the OpenMP pool.
// Work below `grain` items per thread runs inline on the caller, as does everything inside a
// SerialScope.
template <class Fn>
void parallel_for(int64_t n, int64_t grain, Fn&& fn) {
  if (n <= 0) return;
  const int64_t max_t = num_threads();
  int64_t t = std::min<int64_t>(max_t, std::max<int64_t>(1, n / std::max<int64_t>(grain, 1)));
  if (t <= 1 || t_serial || omp_in_parallel()) {
    fn(int64_t{0}, n);
    return;
  }
#pragma omp parallel num_threads(t)
  {
    const auto [b, e] = split_rows(n, omp_get_num_threads(), omp_get_thread_num());
    FloatModeScope mode;
    if (b < e) fn(b, e);
  }
}

// A reasonable grain for cheap per-element work: ~32K elements per thread.
inline constexpr int64_t kElementwiseGrain = 32768;

}  // namespace kiln::cpu
