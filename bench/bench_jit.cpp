// The JIT against eager execution and against the machine, measured in one run:
//   BM_chain_compiled / BM_chain_eager       sigmoid(x*y + 0.5)*x - y*y over f32[16M]
//   BM_chain_compiled vs BM_add_loop_16M     both move 3 arrays x 64 MB per iteration
//   BM_softmax_*, BM_layer_norm_*            rows of f32[4096,1024]
//   BM_transpose_scale_*                     transpose(x) * 2 + 1, x f32[4096,1024] (the
//                                            compiled kernel reads the transpose by stride)
//   BM_add_compiled_f32_1 - BM_add_eager_f32_1   call overhead of a compiled one-add function
#include <benchmark/benchmark.h>

#include <kiln/kiln.h>

#include "bandwidth.h"

namespace {

using namespace kiln;
using kiln_bench::kN;
using kiln_bench::set_bytes;

Tensor chain(const Tensor& x, const Tensor& y) {
  return sigmoid(x * y + 0.5f) * x - y * y;
}

Tensor layer_norm(const Tensor& x) {
  Tensor mu = mean(x, {-1}, true);
  Tensor xc = x - mu;
  return xc * rsqrt(mean(xc * xc, {-1}, true) + 1e-5f);
}

void BM_add_loop_16M(benchmark::State& state) {
  kiln_bench::add_loop_16M(state);
}
BENCHMARK(BM_add_loop_16M)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_chain_eager(benchmark::State& state) {
  Tensor x = random::uniform({kN}), y = random::uniform({kN});
  for (auto _ : state) {
    Tensor r = chain(x, y);
    benchmark::DoNotOptimize(r.get());
  }
  set_bytes(state, 3.0 * kN * 4);
}
BENCHMARK(BM_chain_eager)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_chain_compiled(benchmark::State& state) {
  Tensor x = random::uniform({kN}), y = random::uniform({kN});
  auto f = kiln::function(chain);
  f(x, y);
  for (auto _ : state) {
    Tensor r = f(x, y);
    benchmark::DoNotOptimize(r.get());
  }
  set_bytes(state, 3.0 * kN * 4);
}
BENCHMARK(BM_chain_compiled)->Unit(benchmark::kMillisecond)->UseRealTime();

template <Tensor (*Fn)(const Tensor&), bool Compiled>
void rows_bench(benchmark::State& state) {
  Tensor x = random::normal({4096, 1024});
  auto f = kiln::function([](const Tensor& t) { return Fn(t); });
  if (Compiled) f(x);
  for (auto _ : state) {
    Tensor r = Compiled ? f(x) : Fn(x);
    benchmark::DoNotOptimize(r.get());
  }
  set_bytes(state, 2.0 * 4096 * 1024 * 4);
}
Tensor softmax_rows(const Tensor& x) {
  return softmax(x, -1);
}
BENCHMARK(rows_bench<softmax_rows, false>)
    ->Name("BM_softmax_eager")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(rows_bench<softmax_rows, true>)
    ->Name("BM_softmax_compiled")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(rows_bench<layer_norm, false>)
    ->Name("BM_layer_norm_eager")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(rows_bench<layer_norm, true>)
    ->Name("BM_layer_norm_compiled")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
Tensor transpose_scale(const Tensor& x) {
  return transpose(x, {1, 0}) * 2.f + 1.f;
}
BENCHMARK(rows_bench<transpose_scale, false>)
    ->Name("BM_transpose_scale_eager")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(rows_bench<transpose_scale, true>)
    ->Name("BM_transpose_scale_compiled")
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_add_eager_f32_1(benchmark::State& state) {
  Tensor a = ones({1}), b = ones({1});
  for (auto _ : state) {
    Tensor c = a + b;
    benchmark::DoNotOptimize(c.get());
  }
}
BENCHMARK(BM_add_eager_f32_1);

void BM_add_compiled_f32_1(benchmark::State& state) {
  Tensor a = ones({1}), b = ones({1});
  auto f = kiln::function([](const Tensor& x, const Tensor& y) { return x + y; });
  f(a, b);
  for (auto _ : state) {
    Tensor c = f(a, b);
    benchmark::DoNotOptimize(c.get());
  }
}
BENCHMARK(BM_add_compiled_f32_1);

}  // namespace

BENCHMARK_MAIN();
