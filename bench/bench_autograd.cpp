// Eager training step of an MLP 784-128(relu)-10, batch 128, softmax cross-entropy, Adam,
// against the same forward and backward matmuls through dnnl_sgemm, and those matmuls
// against the machine's FMA peak; and the cost of recording the forward pass on a tape.
#include <benchmark/benchmark.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <chrono>

#include <kiln/backends/cpu/parallel.h>
#include <kiln/jit/cpu/codegen.h>
#include <kiln/jit/executable.h>
#include <kiln/kiln.h>

#include "../examples/mlp_common.h"

namespace {

constexpr int64_t kB = 128, kIn = 784, kHidden = 128, kOut = 10;

struct Mlp {
  kiln::Variable w1, b1, w2, b2;
  kiln::Tensor x, labels;
  Mlp() {
    using namespace kiln;
    random::seed(0);
    w1 = Variable(random::normal({kIn, kHidden}, 0, 0.05), "w1");
    b1 = Variable(zeros({kHidden}), "b1");
    w2 = Variable(random::normal({kHidden, kOut}, 0, 0.1), "w2");
    b2 = Variable(zeros({kOut}), "b2");
    x = random::uniform({kB, kIn});
    labels = random::randint({kB}, 0, kOut, i32);
  }
  kiln::Tensor loss() const {
    using namespace kiln;
    Tensor h = relu(matmul(x, w1) + b1);
    Tensor logits = matmul(h, w2) + b2;
    return mean(sparse_softmax_cross_entropy_with_logits(labels, logits));
  }
  std::vector<kiln::Variable> params() const { return {w1, b1, w2, b2}; }
};

void BM_mlp_train_step_eager(benchmark::State& state) {
  Mlp mlp;
  kiln_examples::Adam adam;
  const auto params = mlp.params();
  for (auto _ : state) {
    kiln::GradientTape tape;
    kiln::Tensor loss = mlp.loss();
    adam.apply(tape.gradient(loss, params), params);
    benchmark::DoNotOptimize(loss.get());
  }
}
BENCHMARK(BM_mlp_train_step_eager)->Unit(benchmark::kMicrosecond);

// The same step as a kiln::function (compiled by the JIT on its first call). The optimizer's
// slot variables are created eagerly first, since a trace may not create variables.
auto traced_step(Mlp& mlp, kiln_examples::Adam& adam) {
  const auto params = mlp.params();
  adam.apply({kiln::zeros({kIn, kHidden}), kiln::zeros({kHidden}), kiln::zeros({kHidden, kOut}),
              kiln::zeros({kOut})},
             params);
  return kiln::function([&mlp, &adam, params](const kiln::Tensor& x, const kiln::Tensor& labels) {
    kiln::GradientTape tape;
    kiln::Tensor h = kiln::relu(kiln::matmul(x, mlp.w1) + mlp.b1);
    kiln::Tensor logits = kiln::matmul(h, mlp.w2) + mlp.b2;
    kiln::Tensor loss = kiln::mean(kiln::sparse_softmax_cross_entropy_with_logits(labels, logits));
    adam.apply(tape.gradient(loss, params), params);
    return loss;
  });
}

// The same step traced and compiled by the JIT.
void BM_mlp_train_step_compiled(benchmark::State& state) {
  Mlp mlp;
  kiln_examples::Adam adam;
  auto step = traced_step(mlp, adam);
  step(mlp.x, mlp.labels);
  for (auto _ : state) {
    kiln::Tensor loss = step(mlp.x, mlp.labels);
    benchmark::DoNotOptimize(loss.get());
  }
  state.counters["kernels"] =
      static_cast<double>(step.get_concrete_function(mlp.x, mlp.labels).kernel_count());
}
BENCHMARK(BM_mlp_train_step_compiled)->Unit(benchmark::kMicrosecond);

// The ratio of the two above, measured in alternation: each iteration runs `block` eager
// steps and then `block` compiled steps (of two separate models), so a change in the machine's
// speed during the run weighs on both sides alike. On a shared VM whose speed drifts by tens
// of percent between benchmarks, these are the ratios to report. With blocks of 1, every step
// starts with the other model's data in the caches, which a training loop never does (it
// repeats one step); blocks of 16 keep the alternation's drift cancelling (each block takes
// ~10 ms) with 15 of 16 steps after a step of their own kind.
void BM_mlp_train_step_eager_over_compiled(benchmark::State& state) {
  using Clock = std::chrono::steady_clock;
  const int64_t block = state.range(0);
  Mlp eager_mlp, traced_mlp;
  kiln_examples::Adam eager_adam, traced_adam;
  const auto params = eager_mlp.params();
  auto step = traced_step(traced_mlp, traced_adam);
  step(traced_mlp.x, traced_mlp.labels);
  double eager_s = 0, compiled_s = 0;
  for (auto _ : state) {
    const Clock::time_point t0 = Clock::now();
    for (int64_t i = 0; i < block; ++i) {
      kiln::GradientTape tape;
      kiln::Tensor loss = eager_mlp.loss();
      eager_adam.apply(tape.gradient(loss, params), params);
      benchmark::DoNotOptimize(loss.get());
    }
    const Clock::time_point t1 = Clock::now();
    for (int64_t i = 0; i < block; ++i) {
      kiln::Tensor loss = step(traced_mlp.x, traced_mlp.labels);
      benchmark::DoNotOptimize(loss.get());
    }
    const Clock::time_point t2 = Clock::now();
    eager_s += std::chrono::duration<double>(t1 - t0).count();
    compiled_s += std::chrono::duration<double>(t2 - t1).count();
  }
  const double n = static_cast<double>(state.iterations() * block);
  state.counters["eager_us"] = 1e6 * eager_s / n;
  state.counters["compiled_us"] = 1e6 * compiled_s / n;
  state.counters["ratio"] = eager_s / compiled_s;
}
BENCHMARK(BM_mlp_train_step_eager_over_compiled)->Arg(1)->Arg(16)->Unit(benchmark::kMicrosecond);

// Compiling that step: a new Executable each time, with the process's kernel modules
// forgotten so that LLVM really optimizes and compiles them (as in a fresh process).
void BM_mlp_train_step_compile_time(benchmark::State& state) {
  Mlp mlp;
  kiln_examples::Adam adam;
  auto step = traced_step(mlp, adam);
  const kiln::ConcreteFunction cf = step.get_concrete_function(mlp.x, mlp.labels);
  for (auto _ : state) {
    kiln::jit::cpu::forget_loaded_kernels();
    kiln::jit::Executable exe(cf.graph());
    benchmark::DoNotOptimize(exe.kernel_count());
  }
}
BENCHMARK(BM_mlp_train_step_compile_time)->Unit(benchmark::kMillisecond);

// The five matmuls of that step: two forward, and dW2, dH, dW1 backward (the input needs
// no gradient). The GFLOP counter (a rate) counts each multiply-add as 2 flops.
void BM_mlp_matmuls_sgemm(benchmark::State& state) {
  constexpr double kFlops = 2.0 * (2 * kB * kIn * kHidden + 3 * kB * kHidden * kOut);
  std::vector<float> x(kB * kIn, 0.5f), w1(kIn * kHidden, 0.01f), h(kB * kHidden),
      w2(kHidden * kOut, 0.1f), logits(kB * kOut), dlogits(kB * kOut, 0.01f), dw2(kHidden * kOut),
      dh(kB * kHidden), dw1(kIn * kHidden);
  for (auto _ : state) {
    dnnl_sgemm('N', 'N', kB, kHidden, kIn, 1.f, x.data(), kIn, w1.data(), kHidden, 0.f, h.data(),
               kHidden);
    dnnl_sgemm('N', 'N', kB, kOut, kHidden, 1.f, h.data(), kHidden, w2.data(), kOut, 0.f,
               logits.data(), kOut);
    dnnl_sgemm('T', 'N', kHidden, kOut, kB, 1.f, h.data(), kHidden, dlogits.data(), kOut, 0.f,
               dw2.data(), kOut);
    dnnl_sgemm('N', 'T', kB, kHidden, kOut, 1.f, dlogits.data(), kOut, w2.data(), kOut, 0.f,
               dh.data(), kHidden);
    dnnl_sgemm('T', 'N', kIn, kHidden, kB, 1.f, x.data(), kIn, dh.data(), kHidden, 0.f, dw1.data(),
               kHidden);
    benchmark::DoNotOptimize(dw1.data());
  }
  state.counters["GFLOP"] = benchmark::Counter(
      kFlops * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_mlp_matmuls_sgemm)->Unit(benchmark::kMicrosecond)->UseRealTime();

#if defined(__x86_64__)
// 12 independent chains of vector FMAs: enough in flight to fill both FMA pipes of a core
// whatever their latency, with no memory traffic. Return a lane of the sum so the chains
// stay live.
__attribute__((target("avx2,fma"))) float fma_chains_avx2(int64_t iters) {
  __m256 acc[12];
  for (int j = 0; j < 12; ++j)
    acc[j] = _mm256_set1_ps(0.001f * static_cast<float>(j));
  const __m256 a = _mm256_set1_ps(0.9999f), b = _mm256_set1_ps(1e-4f);
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j)
      acc[j] = _mm256_fmadd_ps(acc[j], a, b);
  __m256 s = acc[0];
  for (int j = 1; j < 12; ++j)
    s = _mm256_add_ps(s, acc[j]);
  return _mm_cvtss_f32(_mm256_castps256_ps128(s));
}

__attribute__((target("avx512f"))) float fma_chains_avx512(int64_t iters) {
  __m512 acc[12];
  for (int j = 0; j < 12; ++j)
    acc[j] = _mm512_set1_ps(0.001f * static_cast<float>(j));
  const __m512 a = _mm512_set1_ps(0.9999f), b = _mm512_set1_ps(1e-4f);
  for (int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j)
      acc[j] = _mm512_fmadd_ps(acc[j], a, b);
  __m512 s = acc[0];
  for (int j = 1; j < 12; ++j)
    s = _mm512_add_ps(s, acc[j]);
  return _mm512_cvtss_f32(s);
}
#endif

// The ceiling the matmuls above run against: f32 FMA throughput on every thread Kiln uses,
// at the widest vectors the CPU has (AVX-512 where present: oneDNN's sgemm uses it there).
void BM_fma_peak(benchmark::State& state) {
#if defined(__x86_64__)
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    state.SkipWithError("this CPU has no AVX2 FMA");
    return;
  }
  const bool wide = __builtin_cpu_supports("avx512f");
  const int lanes = wide ? 16 : 8;
  constexpr int64_t kIters = 1 << 18;
  const int threads = kiln::cpu::num_threads();
  for (auto _ : state) {
    float sink = 0.f;
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += wide ? fma_chains_avx512(kIters) : fma_chains_avx2(kIters);
    benchmark::DoNotOptimize(sink);
  }
  const double flops = 2.0 * lanes * 12 * static_cast<double>(kIters) * threads;
  state.counters["GFLOP"] = benchmark::Counter(
      flops * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
  state.counters["threads"] = threads;
  state.counters["lanes"] = lanes;
#else
  state.SkipWithError("an x86-64 benchmark");
#endif
}
BENCHMARK(BM_fma_peak)->Unit(benchmark::kMicrosecond)->UseRealTime();

void BM_mlp_forward_no_tape(benchmark::State& state) {
  Mlp mlp;
  for (auto _ : state) {
    kiln::Tensor loss = mlp.loss();
    benchmark::DoNotOptimize(loss.get());
  }
}
BENCHMARK(BM_mlp_forward_no_tape)->Unit(benchmark::kMicrosecond);

void BM_mlp_forward_with_tape(benchmark::State& state) {
  Mlp mlp;
  for (auto _ : state) {
    kiln::GradientTape tape;
    kiln::Tensor loss = mlp.loss();
    benchmark::DoNotOptimize(loss.get());
  }
}
BENCHMARK(BM_mlp_forward_with_tape)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
