#pragma once

// The memory-bandwidth baseline the elementwise benchmarks are measured against: a
// hand-written OpenMP c = a + b loop over f32[16M] (3 arrays x 64 MB per iteration).
#include <benchmark/benchmark.h>
#include <omp.h>

#include <kiln/kiln.h>

namespace kiln_bench {

constexpr int64_t kN = 16 * 1024 * 1024;

inline void set_bytes(benchmark::State& state, double bytes_per_iter) {
  state.counters["GB/s"] =
      benchmark::Counter(bytes_per_iter * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

inline void add_loop_16M(benchmark::State& state) {
  kiln::Tensor ta = kiln::random::uniform({kN}), tb = kiln::random::uniform({kN});
  kiln::Tensor tc = kiln::zeros({kN});
  const float* a = ta.data<float>();
  const float* b = tb.data<float>();
  float* c = tc.mutable_data<float>();
  for (auto _ : state) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < kN; ++i)
      c[i] = a[i] + b[i];
    benchmark::ClobberMemory();
  }
  set_bytes(state, 3.0 * kN * 4);
}

}  // namespace kiln_bench
