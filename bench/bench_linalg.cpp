// matmul and conv2d throughput. BM_matmul_kiln_1024 against BM_dnnl_sgemm_1024 (oneDNN's
// GEMM called directly on preallocated buffers) shows the cost of Kiln's dispatch, shape
// inference, allocation and primitive-cache lookup over the raw library.

#include <benchmark/benchmark.h>

#include <vector>

#include <oneapi/dnnl/dnnl.h>

#include <kiln/kiln.h>

namespace {

void set_gflops(benchmark::State& state, double flops_per_iter) {
  state.counters["GFLOP/s"] = benchmark::Counter(
      flops_per_iter * static_cast<double>(state.iterations()) / 1e9, benchmark::Counter::kIsRate);
}

void BM_matmul_kiln_1024(benchmark::State& state) {
  const int64_t n = 1024;
  kiln::Tensor a = kiln::full(kiln::Shape{n, n}, 0.5f);
  kiln::Tensor b = kiln::full(kiln::Shape{n, n}, 0.25f);
  for (auto _ : state) {
    kiln::Tensor c = kiln::matmul(a, b);
    benchmark::DoNotOptimize(c.data<float>());
  }
  set_gflops(state, 2.0 * n * n * n);
}
BENCHMARK(BM_matmul_kiln_1024)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_dnnl_sgemm_1024(benchmark::State& state) {
  const int64_t n = 1024;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n, 0.0f);
  for (auto _ : state) {
    dnnl_sgemm('N', 'N', n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  set_gflops(state, 2.0 * n * n * n);
}
BENCHMARK(BM_dnnl_sgemm_1024)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_matmul_kiln_batched(benchmark::State& state) {
  // A dense layer over a batch of sequences: [32,128,512] @ [512,512].
  kiln::Tensor x = kiln::full(kiln::Shape{32, 128, 512}, 0.5f);
  kiln::Tensor w = kiln::full(kiln::Shape{512, 512}, 0.25f);
  for (auto _ : state) {
    kiln::Tensor c = kiln::matmul(x, w);
    benchmark::DoNotOptimize(c.data<float>());
  }
  set_gflops(state, 2.0 * 32 * 128 * 512 * 512);
}
BENCHMARK(BM_matmul_kiln_batched)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_matmul_kiln_f64_256(benchmark::State& state) {
  const int64_t n = 256;
  kiln::Tensor a = kiln::full(kiln::Shape{n, n}, 0.5, kiln::f64);
  kiln::Tensor b = kiln::full(kiln::Shape{n, n}, 0.25, kiln::f64);
  for (auto _ : state) {
    kiln::Tensor c = kiln::matmul(a, b);
    benchmark::DoNotOptimize(c.data<double>());
  }
  set_gflops(state, 2.0 * n * n * n);
}
BENCHMARK(BM_matmul_kiln_f64_256)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_conv2d_kiln(benchmark::State& state) {
  // x[32,28,28,32] * 3x3x32x64, SAME.
  kiln::Tensor x = kiln::full(kiln::Shape{32, 28, 28, 32}, 0.5f);
  kiln::Tensor w = kiln::full(kiln::Shape{3, 3, 32, 64}, 0.25f);
  for (auto _ : state) {
    kiln::Tensor y = kiln::conv2d(x, w, {1, 1}, kiln::Padding::same);
    benchmark::DoNotOptimize(y.data<float>());
  }
  set_gflops(state, 2.0 * 32 * 28 * 28 * 64 * 3 * 3 * 32);
}
BENCHMARK(BM_conv2d_kiln)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_max_pool2d_kiln(benchmark::State& state) {
  kiln::Tensor x = kiln::full(kiln::Shape{32, 28, 28, 64}, 0.5f);
  for (auto _ : state) {
    kiln::Tensor y = kiln::max_pool2d(x, {2, 2}, {2, 2});
    benchmark::DoNotOptimize(y.data<float>());
  }
}
BENCHMARK(BM_max_pool2d_kiln)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
