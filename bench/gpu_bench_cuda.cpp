// The CUDA backend's benchmarks (built with CUDA; on a machine without a GPU each one says it
// skipped). Ratios measured in one run, as the CUDA issue asks:
//   BM_cuda_matmul_4096/{f32,tf32} vs BM_cublaslt_matmul_4096/{f32,tf32}   Kiln's matmul
//       against the same product through raw cublasLt (no Kiln in between)
//   BM_cuda_chain_256M (compiled) vs BM_cuda_copy_256M   the elementwise chain over f32[256M]
//       against cudaMemcpy device to device, both as GB/s of the bytes they must move
//   BM_cuda_mlp_step/{eager,compiled}   the MLP 784-128-10 Adam train step on the GPU (the
//       compiled step replays a CUDA Graph: graph_replays_per_call says whether it did)
// Every iteration ends with the device synchronized, so the times are the GPU's.
#include <benchmark/benchmark.h>
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <kiln/jit/executable.h>
#include <kiln/kiln.h>

#include "../examples/mlp_common.h"

namespace {

using namespace kiln;
const Device gpu = Device::cuda(0);

bool skip(benchmark::State& state) {
  if (device_count(DeviceType::cuda) > 0) return false;
  state.SkipWithError("no CUDA device");
  return true;
}

void flops(benchmark::State& state, double per_iter) {
  state.counters["TFLOP/s"] =
      benchmark::Counter(per_iter * state.iterations() / 1e12, benchmark::Counter::kIsRate);
}
void bytes(benchmark::State& state, double per_iter) {
  state.counters["GB/s"] =
      benchmark::Counter(per_iter * state.iterations() / 1e9, benchmark::Counter::kIsRate);
}

constexpr int64_t kM = 4096;

void BM_cuda_matmul_4096(benchmark::State& state) {
  if (skip(state)) return;
  set_allow_tf32(state.range(0) == 1);
  const Tensor a = random::uniform({kM, kM}).to(gpu), b = random::uniform({kM, kM}).to(gpu);
  synchronize(gpu);
  for (auto _ : state) {
    Tensor c = matmul(a, b);
    synchronize(gpu);
    benchmark::DoNotOptimize(c.get());
  }
  set_allow_tf32(false);
  flops(state, 2.0 * kM * kM * kM);
}
BENCHMARK(BM_cuda_matmul_4096)
    ->Arg(0)
    ->Arg(1)
    ->ArgNames({"tf32"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The same product straight through cublasLt: one handle, one heuristic query, one workspace,
// allocated before the loop.
void BM_cublaslt_matmul_4096(benchmark::State& state) {
  if (skip(state)) return;
  // Random operands, as Kiln's run gets (zeros draw less power and run faster on an H100).
  const Tensor ta = random::uniform({kM, kM}).to(gpu), tb = random::uniform({kM, kM}).to(gpu);
  synchronize(gpu);
  const float* a = ta.data<float>();
  const float* b = tb.data<float>();
  float* c = nullptr;
  void* ws = nullptr;
  const size_t n = static_cast<size_t>(kM) * kM * sizeof(float), ws_bytes = size_t{32} << 20;
  cudaMalloc(&c, n);
  cudaMalloc(&ws, ws_bytes);
  cublasLtHandle_t h;
  cublasLtCreate(&h);
  cublasLtMatmulDesc_t desc;
  cublasLtMatmulDescCreate(
      &desc, state.range(0) == 1 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F, CUDA_R_32F);
  cublasLtMatrixLayout_t l;
  cublasLtMatrixLayoutCreate(&l, CUDA_R_32F, kM, kM, kM);
  cublasLtMatmulPreference_t pref;
  cublasLtMatmulPreferenceCreate(&pref);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes,
                                       sizeof(ws_bytes));
  cublasLtMatmulHeuristicResult_t r{};
  int found = 0;
  cublasLtMatmulAlgoGetHeuristic(h, desc, l, l, l, l, pref, 1, &r, &found);
  const float alpha = 1.f, beta = 0.f;
  cudaStream_t s;
  cudaStreamCreate(&s);
  for (auto _ : state) {
    cublasLtMatmul(h, desc, &alpha, a, l, b, l, &beta, c, l, c, l, &r.algo, ws, ws_bytes, s);
    cudaStreamSynchronize(s);
  }
  flops(state, 2.0 * kM * kM * kM);
  cudaStreamDestroy(s);
  cublasLtMatmulPreferenceDestroy(pref);
  cublasLtMatrixLayoutDestroy(l);
  cublasLtMatmulDescDestroy(desc);
  cublasLtDestroy(h);
  cudaFree(c);
  cudaFree(ws);
}
BENCHMARK(BM_cublaslt_matmul_4096)
    ->Arg(0)
    ->Arg(1)
    ->ArgNames({"tf32"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

constexpr int64_t kBig = int64_t{256} << 20;

void BM_cuda_copy_256M(benchmark::State& state) {
  if (skip(state)) return;
  const Tensor x = random::uniform({kBig}).to(gpu);
  Tensor y = zeros({kBig}).to(gpu);
  synchronize(gpu);
  for (auto _ : state) {
    cudaMemcpy(y.mutable_data<float>(), x.data<float>(), kBig * sizeof(float),
               cudaMemcpyDeviceToDevice);
    cudaDeviceSynchronize();  // a device-to-device cudaMemcpy may return before it is done
  }
  bytes(state, 2.0 * kBig * sizeof(float));
}
BENCHMARK(BM_cuda_copy_256M)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_cuda_chain_256M(benchmark::State& state) {
  if (skip(state)) return;
  auto chain = kiln::function(
      [](const Tensor& x, const Tensor& y) { return sigmoid(x * y + 0.5f) * x - y * y; });
  const Tensor x = random::uniform({kBig}).to(gpu), y = random::uniform({kBig}).to(gpu);
  chain(x, y);
  synchronize(gpu);
  for (auto _ : state) {
    Tensor r = chain(x, y);
    synchronize(gpu);
    benchmark::DoNotOptimize(r.get());
  }
  bytes(state, 3.0 * kBig * sizeof(float));
}
BENCHMARK(BM_cuda_chain_256M)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_cuda_mlp_step(benchmark::State& state) {
  if (skip(state)) return;
  const bool compiled = state.range(0) == 1;
  random::seed(0);
  std::vector<Variable> params = {Variable(random::normal({784, 128}, 0, 0.05).to(gpu), "w1"),
                                  Variable(zeros({128}).to(gpu), "b1"),
                                  Variable(random::normal({128, 10}, 0, 0.1).to(gpu), "w2"),
                                  Variable(zeros({10}).to(gpu), "b2")};
  const Tensor x = random::uniform({128, 784}).to(gpu);
  const Tensor labels = random::randint({128}, 0, 10, i32).to(gpu);
  kiln_examples::Adam adam;
  std::vector<Tensor> zero_grads;
  for (const Variable& p : params)
    zero_grads.push_back(zeros_like(p.value()));
  adam.apply(zero_grads, params);  // creates the slots eagerly (a trace may not)
  auto body = [&](const Tensor& xx, const Tensor& ll) {
    GradientTape tape;
    Tensor h = relu(matmul(xx, params[0].value()) + params[1].value());
    Tensor logits = matmul(h, params[2].value()) + params[3].value();
    Tensor loss = mean(sparse_softmax_cross_entropy_with_logits(ll, logits));
    adam.apply(tape.gradient(loss, params), params);
    return loss;
  };
  auto step = kiln::function(body);
  // The first call traces, compiles and loads the PTX (the compiled step), or creates the
  // cublasLt handles (both): outside the timed loop, as in every other benchmark here.
  (compiled ? step(x, labels) : body(x, labels)).to(Device::cpu());
  const int64_t replays = jit::cuda_graph_replays();
  for (auto _ : state) {
    Tensor loss = compiled ? step(x, labels) : body(x, labels);
    synchronize(gpu);
    benchmark::DoNotOptimize(loss.get());
  }
  // 1 where every timed call replayed a CUDA Graph, 0 where they ran step by step.
  state.counters["graph_replays_per_call"] =
      static_cast<double>(jit::cuda_graph_replays() - replays) /
      static_cast<double>(state.iterations());
}
BENCHMARK(BM_cuda_mlp_step)
    ->Arg(0)
    ->Arg(1)
    ->ArgNames({"compiled"})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
