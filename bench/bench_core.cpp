// Eager-op benchmarks against hand-written OpenMP loops measured in the same binary.
//   BM_add_eager_16M      vs BM_add_loop_16M     (GB/s: 3 arrays x 64 MB per iteration)
//   BM_sum_last_axis      vs BM_read_loop_4096sq  (GB/s: 64 MB read)
//   BM_sum_first_axis     vs BM_read_loop_4096sq
//   BM_add_eager_1        (dispatch overhead: time per add of two f32[1])
#include <benchmark/benchmark.h>
#include <omp.h>

#include <kiln/kiln.h>

#include "bandwidth.h"

namespace {

using kiln_bench::kN;
using kiln_bench::set_bytes;

void BM_add_loop_16M(benchmark::State& state) {
  kiln_bench::add_loop_16M(state);
}
BENCHMARK(BM_add_loop_16M)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_add_eager_16M(benchmark::State& state) {
  kiln::Tensor a = kiln::random::uniform({kN}), b = kiln::random::uniform({kN});
  for (auto _ : state) {
    kiln::Tensor c = a + b;
    benchmark::DoNotOptimize(c.data<float>());
  }
  set_bytes(state, 3.0 * kN * 4);
}
BENCHMARK(BM_add_eager_16M)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_read_loop_4096sq(benchmark::State& state) {
  kiln::Tensor t = kiln::random::uniform({4096, 4096});
  const float* p = t.data<float>();
  const int64_t n = t.numel();
  for (auto _ : state) {
    float total = 0;
#pragma omp parallel for simd reduction(+ : total) schedule(static)
    for (int64_t i = 0; i < n; ++i)
      total += p[i];
    benchmark::DoNotOptimize(total);
  }
  set_bytes(state, 4.0 * n);
}
BENCHMARK(BM_read_loop_4096sq)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_sum_last_axis(benchmark::State& state) {
  kiln::Tensor t = kiln::random::uniform({4096, 4096});
  for (auto _ : state) {
    kiln::Tensor s = kiln::sum(t, {1});
    benchmark::DoNotOptimize(s.data<float>());
  }
  set_bytes(state, 4.0 * t.numel());
}
BENCHMARK(BM_sum_last_axis)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_sum_first_axis(benchmark::State& state) {
  kiln::Tensor t = kiln::random::uniform({4096, 4096});
  for (auto _ : state) {
    kiln::Tensor s = kiln::sum(t, {0});
    benchmark::DoNotOptimize(s.data<float>());
  }
  set_bytes(state, 4.0 * t.numel());
}
BENCHMARK(BM_sum_first_axis)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_add_eager_1(benchmark::State& state) {
  kiln::Tensor a = kiln::ones({1}), b = kiln::ones({1});
  for (auto _ : state) {
    kiln::Tensor c = a + b;
    benchmark::DoNotOptimize(c.get());
  }
}
BENCHMARK(BM_add_eager_1)->Unit(benchmark::kNanosecond);

}  // namespace

BENCHMARK_MAIN();
