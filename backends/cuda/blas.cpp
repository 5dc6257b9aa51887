// matmul and matmul_bias_act on CUDA through cublasLt. Kiln's matrices are row-major, cuBLAS's
// column-major: C = A B is computed as C^T = B^T A^T, which reads each row-major operand as
// the column-major transpose it already is. A transposed view (unit row stride) is read with
// op T instead of being copied; other strided operands are made dense first. f32 runs in full
// f32 unless set_allow_tf32(true) (then on TF32 tensor cores); f64 in f64. The bias of
// matmul_bias_act is a cublasLt epilogue, its relu a kernel of ours (the epilogue keeps NaN). gemm
// (blas.h) is the same call on raw device pointers, for the convolutions' patch matrices
// (nn_kernels.cpp).

#include <cublasLt.h>

#include <cstdint>
#include <map>
#include <mutex>

#include <kiln/core/device_backend.h>
#include <kiln/core/ops.h>
#include <kiln/core/registry.h>
#include <kiln/core/tensor.h>

#include "blas.h"
#include "launch_nn.h"  // relu_inplace
#include "runtime.h"

namespace kiln::cuda {
namespace {

void check_lt(cublasStatus_t s, const char* what) {
  KILN_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuda: {} failed: {} ({})", what, cublasLtGetStatusName(s),
             cublasLtGetStatusString(s));
}

constexpr size_t kWorkspace = size_t{32} << 20;

struct Lt {
  cublasLtHandle_t handle = nullptr;
  Tensor workspace;
};

Lt& lt(int device) {
  static std::mutex mu;
  static auto* per_device = new std::map<int, Lt>;  // never destroyed: tensors may outlive exit
  std::lock_guard<std::mutex> lock(mu);
  Lt& l = (*per_device)[device];
  if (l.handle == nullptr) {
    DeviceGuard g(device);
    check_lt(cublasLtCreate(&l.handle), "cublasLtCreate");
    l.workspace =
        Tensor::empty(Shape{static_cast<int64_t>(kWorkspace)}, DType::u8, Device::cuda(device));
  }
  return l;
}

// A row-major [rows, cols] operand as cublasLt reads it: the stored column-major matrix, its
// leading dim, and whether it is read transposed to give the row-major matrix's transpose.
struct Operand {
  const void* data = nullptr;
  uint64_t stored_rows = 0, stored_cols = 0;
  int64_t ld = 0;
  cublasOperation_t op = CUBLAS_OP_N;
  int64_t batch_stride = 0;
  Tensor keep;  // a dense copy, when one was needed
};

// For the product C^T = B^T A^T, each operand is wanted as X^T (cols x rows).
Operand operand(const Tensor& x2, int64_t batch_stride) {
  Operand o;
  const int64_t r = x2.dim(-2), c = x2.dim(-1);
  const int64_t sr = x2.strides()[x2.rank() - 2], sc = x2.strides()[x2.rank() - 1];
  if ((sc == 1 || c == 1) && sr >= std::max<int64_t>(c, 1)) {  // row-major: X^T stored col-major
    o = {x2.raw_data(),
         static_cast<uint64_t>(c),
         static_cast<uint64_t>(r),
         sr,
         CUBLAS_OP_N,
         batch_stride,
         {}};
  } else if ((sr == 1 || r == 1) && sc >= std::max<int64_t>(r, 1)) {  // a transposed view
    o = {x2.raw_data(),
         static_cast<uint64_t>(r),
         static_cast<uint64_t>(c),
         sc,
         CUBLAS_OP_T,
         batch_stride,
         {}};
  } else {
    Tensor d = x2.contiguous();
    o = operand(d, batch_stride);
    o.keep = d;
  }
  return o;
}

// The largest power of two (up to 256) that divides the address.
uint32_t alignment(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t n = 256;
  while (n > 1 && a % n != 0)
    n /= 2;
  return n;
}

struct Layout {
  cublasLtMatrixLayout_t l = nullptr;
  Layout(cudaDataType t, uint64_t rows, uint64_t cols, int64_t ld, int32_t batch, int64_t stride) {
    check_lt(cublasLtMatrixLayoutCreate(&l, t, rows, cols, std::max<int64_t>(ld, 1)),
             "cublasLtMatrixLayoutCreate");
    if (batch > 1) {
      check_lt(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch,
                                                sizeof(batch)),
               "batch count");
      check_lt(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET,
                                                &stride, sizeof(stride)),
               "batch stride");
    }
  }
  ~Layout() { cublasLtMatrixLayoutDestroy(l); }
  Layout(const Layout&) = delete;
  Layout& operator=(const Layout&) = delete;
};

// out[b] = act(a[b] x b[b] + bias) for `batch` products of [M, K] x [K, N], plus out's
// previous contents when `accumulate` (beta = 1).
void lt_matmul(const Operand& a, const Operand& b, void* out, int64_t batch, int64_t M, int64_t K,
               int64_t N, DType dt, const void* bias, bool relu, int device,
               bool accumulate = false) {
  Lt& l = lt(device);
  const bool f32 = dt == DType::f32;
  const cudaDataType t = f32 ? CUDA_R_32F : CUDA_R_64F;
  const cublasComputeType_t compute = !f32           ? CUBLAS_COMPUTE_64F
                                      : allow_tf32() ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                     : CUBLAS_COMPUTE_32F;
  cublasLtMatmulDesc_t desc = nullptr;
  check_lt(cublasLtMatmulDescCreate(&desc, compute, t), "cublasLtMatmulDescCreate");
  struct DescGuard {
    cublasLtMatmulDesc_t d;
    ~DescGuard() { cublasLtMatmulDescDestroy(d); }
  } guard{desc};
  // First operand B^T (N x K), second A^T (K x M), result C^T (N x M).
  check_lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSA, &b.op, sizeof(b.op)),
           "transa");
  check_lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_TRANSB, &a.op, sizeof(a.op)),
           "transb");
  if (bias != nullptr) {
    const cublasLtEpilogue_t epi = relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
    check_lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof(epi)),
             "epilogue");
    check_lt(cublasLtMatmulDescSetAttribute(desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias,
                                            sizeof(bias)),
             "bias pointer");
  }
  const auto nb = static_cast<int32_t>(batch);
  Layout la(t, b.stored_rows, b.stored_cols, b.ld, nb, b.batch_stride);
  Layout lb(t, a.stored_rows, a.stored_cols, a.ld, nb, a.batch_stride);
  Layout lc(t, static_cast<uint64_t>(N), static_cast<uint64_t>(M), N, nb, M * N);
  cublasLtMatmulPreference_t pref = nullptr;
  check_lt(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const uint64_t ws = kWorkspace;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof(ws));
  // The heuristic assumes 256-byte aligned operands unless told: views with an offset are not.
  const uint32_t align_b = alignment(b.data), align_a = alignment(a.data), align_c = alignment(out);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align_b,
                                       sizeof(align_b));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align_a,
                                       sizeof(align_a));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align_c,
                                       sizeof(align_c));
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align_c,
                                       sizeof(align_c));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(l.handle, desc, la.l, lb.l, lc.l, lc.l,
                                                           pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  check_lt(hs, "cublasLtMatmulAlgoGetHeuristic");
  KILN_CHECK(found > 0, "matmul: cublasLt has no algorithm for [{}, {}] x [{}, {}] ({} batches)", M,
             K, K, N, batch);
  const float alpha32 = 1.f, beta32 = accumulate ? 1.f : 0.f;
  const double alpha64 = 1.0, beta64 = accumulate ? 1.0 : 0.0;
  const void* alpha = f32 ? static_cast<const void*>(&alpha32) : &alpha64;
  const void* beta = f32 ? static_cast<const void*>(&beta32) : &beta64;
  check_lt(
      cublasLtMatmul(l.handle, desc, alpha, b.data, la.l, a.data, lb.l, beta, out, lc.l, out, lc.l,
                     &result.algo, l.workspace.mutable_data<char>(), kWorkspace, stream(device)),
      "cublasLtMatmul");
}

std::vector<Tensor> matmul_kernel(std::span<const Tensor> in, const Attrs&,
                                  std::span<const TensorType> out_types) {
  const Device dev = in[0].device();
  DeviceGuard g(dev.index);
  Tensor a = in[0], b = in[1];
  KILN_CHECK(is_floating(a.dtype()), "matmul: {} on {} is not supported yet (f32 and f64 are)",
             a.type_str(), dev.str());
  if (a.rank() == 1) a = a.reshape(Shape{1, a.dim(0)});
  if (b.rank() == 1) b = b.reshape(Shape{b.dim(0), 1});
  const int64_t M = a.dim(-2), K = a.dim(-1), N = b.dim(-1);
  const Shape batch_shape = broadcast_shapes(
      Shape(std::vector<int64_t>(a.shape().dims().begin(), a.shape().dims().end() - 2)),
      Shape(std::vector<int64_t>(b.shape().dims().begin(), b.shape().dims().end() - 2)), "matmul");
  Tensor out = Tensor::empty(out_types[0].shape, out_types[0].dtype, dev);
  const int64_t batch = batch_shape.numel();
  if (out.numel() == 0) return {out};
  if (K == 0) return {zeros_like(out)};
  // Batched operands: stride M*K (K*N) when they carry every batch, 0 when broadcast. The
  // output [batch..., M, N] is dense, whichever of M and N a vector operand dropped.
  auto batched = [&](Tensor x, int64_t rows, int64_t cols) -> std::pair<Tensor, int64_t> {
    if (x.rank() == 2 || x.numel() == rows * cols) return {x.reshape(Shape{rows, cols}), 0};
    std::vector<int64_t> dims = batch_shape.dims();
    dims.push_back(rows);
    dims.push_back(cols);
    Tensor d = broadcast_to(x, Shape(dims)).contiguous();
    return {d.reshape(Shape{batch, rows, cols}), rows * cols};
  };
  auto [a2, sa] = batched(a, M, K);
  auto [b2, sb] = batched(b, K, N);
  const Operand oa = operand(a2, sa);
  const Operand ob = operand(b2, sb);
  lt_matmul(oa, ob, out.mutable_data<char>(), batch, M, K, N, a.dtype(), nullptr, false, dev.index);
  return {out};
}

std::vector<Tensor> matmul_bias_act_kernel(std::span<const Tensor> in, const Attrs& attrs,
                                           std::span<const TensorType> out_types) {
  const Device dev = in[0].device();
  DeviceGuard g(dev.index);
  const Tensor& a = in[0];
  const Tensor& b = in[1];
  Tensor bias = in[2].contiguous();
  if (alignment(bias.raw_data()) < 16) bias = bias.clone();  // the epilogue reads it in vectors
  const int64_t M = a.dim(0), K = a.dim(1), N = b.dim(1);
  KILN_CHECK(bias.numel() == N, "matmul_bias_act: bias {} does not match the product [{}, {}]",
             bias.type_str(), M, N);
  Tensor out = Tensor::empty(out_types[0].shape, out_types[0].dtype, dev);
  if (out.numel() == 0) return {out};
  const bool relu = attrs.str("act") == "relu";
  if (K == 0) {
    Tensor r = zeros_like(out) + bias;
    return {relu ? kiln::relu(r) : r};
  }
  // The bias is cublasLt's epilogue; the relu is not: RELU_BIAS keeps NaN, and the CPU (and
  // eager relu) map NaN to 0 (seen on an H100).
  lt_matmul(operand(a, 0), operand(b, 0), out.mutable_data<char>(), 1, M, K, N, a.dtype(),
            bias.raw_data(), false, dev.index);
  if (relu)
    check(launch::relu_inplace(static_cast<int>(out.dtype()), out.mutable_data<char>(), out.numel(),
                               stream(dev.index)),
          "matmul_bias_act (relu)");
  return {out};
}

}  // namespace

void gemm(DType dt, int64_t M, int64_t K, int64_t N, const MatrixRef& a, const MatrixRef& b,
          void* c, const void* bias, bool relu, bool accumulate, int device) {
  // operand()'s two cases, for a logical [rows, cols] matrix: row-major is its transpose
  // stored column-major (op N), a transposed view the matrix itself stored column-major (op T).
  auto raw = [](const MatrixRef& x, int64_t rows, int64_t cols) {
    Operand o;
    o.data = x.data;
    o.stored_rows = static_cast<uint64_t>(x.transposed ? rows : cols);
    o.stored_cols = static_cast<uint64_t>(x.transposed ? cols : rows);
    o.ld = x.ld;
    o.op = x.transposed ? CUBLAS_OP_T : CUBLAS_OP_N;
    return o;
  };
  lt_matmul(raw(a, M, K), raw(b, K, N), c, 1, M, K, N, dt, bias, relu, device, accumulate);
}

namespace {

KILN_STATIC_INIT {
  registry().mutable_op("matmul").set_kernel(DeviceType::cuda, matmul_kernel);
  registry().mutable_op("matmul_bias_act").set_kernel(DeviceType::cuda, matmul_bias_act_kernel);
};

}  // namespace
}  // namespace kiln::cuda
