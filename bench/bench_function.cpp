// kiln::function: the time to trace the MLP train step, and the call overhead of a cached
// traced one-add function against the eager add on f32[1].
#include <benchmark/benchmark.h>

#include <kiln/kiln.h>

#include "../examples/mlp_common.h"

namespace {

void BM_add_eager_f32_1(benchmark::State& state) {
  kiln::Tensor a = kiln::ones({1}), b = kiln::ones({1});
  for (auto _ : state) {
    kiln::Tensor c = a + b;
    benchmark::DoNotOptimize(c.get());
  }
}
BENCHMARK(BM_add_eager_f32_1);

void BM_add_traced_f32_1(benchmark::State& state) {
  kiln::Tensor a = kiln::ones({1}), b = kiln::ones({1});
  auto f = kiln::function([](const kiln::Tensor& x, const kiln::Tensor& y) { return x + y; });
  f(a, b);  // trace once
  for (auto _ : state) {
    kiln::Tensor c = f(a, b);
    benchmark::DoNotOptimize(c.get());
  }
}
BENCHMARK(BM_add_traced_f32_1);

// Each iteration builds a new Function, so every call traces.
void BM_trace_mlp_train_step(benchmark::State& state) {
  using namespace kiln;
  random::seed(0);
  Variable w1(random::normal({784, 128}, 0, 0.05), "w1"), b1(zeros({128}), "b1");
  Variable w2(random::normal({128, 10}, 0, 0.1), "w2"), b2(zeros({10}), "b2");
  Tensor x = random::uniform({128, 784});
  Tensor labels = random::randint({128}, 0, 10, i32);
  const std::vector<Variable> params = {w1, b1, w2, b2};
  kiln_examples::Adam adam;
  adam.apply({zeros({784, 128}), zeros({128}), zeros({128, 10}), zeros({10})}, params);
  for (auto _ : state) {
    auto step = kiln::function([&](const Tensor& xb, const Tensor& yb) {
      GradientTape tape;
      Tensor h = relu(matmul(xb, w1) + b1);
      Tensor loss = mean(sparse_softmax_cross_entropy_with_logits(yb, matmul(h, w2) + b2));
      adam.apply(tape.gradient(loss, params), params);
      return loss;
    });
    auto cf = step.get_concrete_function(TensorSpec({128, 784}), TensorSpec({128}, i32));
    benchmark::DoNotOptimize(cf.graph().nodes.size());  // tracing only: no compile
  }
}
BENCHMARK(BM_trace_mlp_train_step)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
