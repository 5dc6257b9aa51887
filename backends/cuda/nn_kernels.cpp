// The CUDA kernels of conv2d, conv2d_bias_act, max_pool2d, avg_pool2d and their backward
// primitives (core/nn_grad.h): geometry, chunking and GEMM plans on the host, the element
// kernels in conv.cu and pool.cu (launch_nn.h), the GEMMs through cublasLt (blas.h). Layouts,
// padding and results as the CPU kernels (backends/cpu/conv.cpp, conv_grad.cpp).
//
// A convolution is a GEMM over the patch matrix col [M, K], M = N*OH*OW output pixels by
// K = KH*KW*C taps (launch_nn.h's im2col); the HWIO filter, flattened, is w [K, O] as it lies:
//   conv2d                  y [M, O]  = col x w            (im2col, GEMM)
//   conv2d_backprop_input   dcol [M, K] = dy x w^T         (GEMM, col2im: a gather)
//   conv2d_backprop_filter  dw [K, O] = col^T x dy         (im2col, GEMM)
//   conv2d_bias_act         conv2d with cublasLt's bias epilogue, then relu in place
// A 1x1 filter with unit strides and no padding needs no patch matrix: col is x itself. The
// patch matrix is built for a chunk of rows at a time, at most 256 MiB of it (the environment
// variable KILN_CUDA_IM2COL_BYTES sets another bound, so tests can force many chunks): the
// forward writes the chunk's rows of y, the filter gradient adds the chunk's product into dw
// (beta = 1), col2im adds the chunk's taps into dx. Integer and bool convolutions, which
// cuBLAS has no GEMM for, run a direct kernel with the CPU loops' wrapping arithmetic.
//
// Differences from the CPU: the GEMM multiplies the padding's zeros too, so an inf or NaN in
// the filter (forward) or in dy (filter gradient) makes NaN where a tap lies in the padding,
// while the CPU skips those taps. f32 sums round in another order than oneDNN's (and in TF32
// when set_allow_tf32(true)).

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>

#include <kiln/backends/cpu/window.h>  // the windows' geometry
#include <kiln/core/device_backend.h>
#include <kiln/core/dispatch.h>
#include <kiln/core/ops.h>
#include <kiln/core/registry.h>
#include <kiln/core/tensor.h>

#include "blas.h"
#include "launch_nn.h"
#include "runtime.h"

namespace kiln::cuda {
namespace {

using launch::Window;

constexpr int64_t kIm2colBytes = int64_t{256} << 20;

int code(DType d) {
  return static_cast<int>(d);
}

// The CPU's geometry (backends/cpu/window.h: strides, dilations, TensorFlow's padding) as the
// plain struct the .cu files take; the padding after is implied by OH and OW.
Window window(const Shape& in, const Shape& out, int64_t kh, int64_t kw, const Attrs& a) {
  const cpu::Window c = cpu::geometry(in, out, kh, kw, a);
  return Window{c.N, c.H, c.W, c.C, c.OH, c.OW, c.KH, c.KW, c.SH, c.SW, c.DH, c.DW, c.PT, c.PL};
}

// Whether the patch matrix is x itself: a 1x1 window, unit strides, no padding.
bool pointwise(const Window& g) {
  return g.KH == 1 && g.KW == 1 && g.SH == 1 && g.SW == 1 && g.PT == 0 && g.PL == 0 &&
         g.OH == g.H && g.OW == g.W;
}

// Rows of the patch matrix (K columns of dt) per chunk: as many as fit the bound, at least 1.
int64_t chunk_rows(int64_t M, int64_t K, DType dt) {
  int64_t bytes = kIm2colBytes;
  if (const char* s = std::getenv("KILN_CUDA_IM2COL_BYTES"); s != nullptr && *s != '\0')
    bytes = std::max<int64_t>(std::atoll(s), 1);
  const int64_t row = K * static_cast<int64_t>(size_of(dt));
  return std::clamp<int64_t>(bytes / row, 1, M);
}

// `t` dense and row-major (callers hold SuspendHooks: kernels never record).
Tensor dense(const Tensor& t) {
  return t.is_contiguous() ? t : t.contiguous();
}

// The first byte of an output (which the kernel just created) or of an input.
char* bytes(const Tensor& t) {
  return t.mutable_data<char>();
}
const char* cbytes(const Tensor& t) {
  return static_cast<const char*>(t.raw_data());
}

// A new tensor of type t on device d, zeroed (0 bits are 0 in every dtype).
Tensor zeros_on(const TensorType& t, Device d) {
  Tensor z = Tensor::empty(t.shape, t.dtype, d);
  if (z.numel() > 0)
    check(cudaMemsetAsync(bytes(z), 0, static_cast<size_t>(z.numel()) * size_of(t.dtype),
                          stream(d.index)),
          "zeroing a convolution or pooling output");
  return z;
}

// Raises kiln::Error naming the op, the device and the operands unless `ok` (inference has
// already rejected these dtypes; this keeps the kernels' own assumption visible).
void expect_dtype(bool ok, const char* op, const char* wanted, std::span<const Tensor> in) {
  if (ok) return;
  std::string operands;
  for (const Tensor& t : in)
    operands += (operands.empty() ? "" : ", ") + t.type_str();
  KILN_FAIL("{}: {} is not supported on {} ({} are): {}", op, name(in[0].dtype()),
            in[0].device().str(), wanted, operands);
}

// ---- convolutions --------------------------------------------------------------------------
// y [M, O] = col x w (+ bias), M > 0, K > 0, O > 0; bias (O values, 16-byte aligned) may be
// null.
void conv_forward(const Window& g, int64_t O, const Tensor& x, const Tensor& w, const Tensor& y,
                  const void* bias) {
  const DType dt = y.dtype();
  const int dev = y.device().index;
  const int64_t M = g.N * g.OH * g.OW, K = g.KH * g.KW * g.C;
  const int64_t es = static_cast<int64_t>(size_of(dt));
  const MatrixRef wm{w.raw_data(), O, false};
  if (pointwise(g)) {
    gemm(dt, M, K, O, {x.raw_data(), K, false}, wm, bytes(y), bias, false, false, dev);
    return;
  }
  const int64_t rows = chunk_rows(M, K, dt);
  const Tensor col = Tensor::empty(Shape{rows, K}, dt, y.device());
  for (int64_t m0 = 0; m0 < M; m0 += rows) {
    const int64_t r = std::min(rows, M - m0);
    check(launch::im2col(code(dt), bytes(col), x.raw_data(), g, m0, r, stream(dev)),
          "conv2d (im2col)");
    gemm(dt, r, K, O, {col.raw_data(), K, false}, wm, bytes(y) + m0 * O * es, bias, false, false,
         dev);
  }
}

std::vector<Tensor> conv2d_kernel(std::span<const Tensor> in, const Attrs& a,
                                  std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard guard(dev.index);
  SuspendHooks quiet;
  const Tensor x = dense(in[0]), w = dense(in[1]);
  const Tensor y = Tensor::empty(out[0].shape, out[0].dtype, dev);
  if (y.numel() == 0) return {y};
  const Window g = window(x.shape(), y.shape(), w.dim(0), w.dim(1), a);
  const int64_t O = w.dim(3);
  if (!is_floating(y.dtype())) {  // bool, u8, i32, i64
    check(launch::conv_direct(code(y.dtype()), bytes(y), x.raw_data(), w.raw_data(), g, O,
                              stream(dev.index)),
          "conv2d (direct)");
    return {y};
  }
  if (g.KH * g.KW * g.C == 0) return {zeros_on(out[0], dev)};  // an empty sum per output
  conv_forward(g, O, x, w, y, nullptr);
  return {y};
}

// act(conv2d(x, w) + bias), f32, the bias one value per output channel ([O] or [1,...,1,O]).
std::vector<Tensor> conv2d_bias_act_kernel(std::span<const Tensor> in, const Attrs& a,
                                           std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard guard(dev.index);
  SuspendHooks quiet;
  expect_dtype(out[0].dtype == DType::f32, "conv2d_bias_act", "f32 operands", in);
  const Tensor x = dense(in[0]), w = dense(in[1]);
  Tensor bias = dense(in[2]);
  const bool relu = a.str("act") == "relu";
  const Tensor y = Tensor::empty(out[0].shape, out[0].dtype, dev);
  if (y.numel() == 0) return {y};
  const Window g = window(x.shape(), y.shape(), w.dim(0), w.dim(1), a);
  const int64_t O = w.dim(3);
  KILN_CHECK(bias.numel() == O, "conv2d_bias_act: bias {} does not match the output {} on {}",
             bias.type_str(), y.type_str(), dev.str());
  if (g.KH * g.KW * g.C == 0) {  // the convolution is 0: act(bias) everywhere
    const Tensor r = zeros_like(y) + bias.reshape(Shape{O});
    return {relu ? kiln::relu(r) : r};
  }
  // cublasLt's epilogue reads the bias in vectors (as matmul_bias_act in blas.cpp).
  if (reinterpret_cast<uintptr_t>(bias.raw_data()) % 16 != 0) bias = bias.clone();
  conv_forward(g, O, x, w, y, bias.raw_data());
  // Not cublasLt's RELU_BIAS epilogue: its documentation (x := max(x, 0)) leaves NaN open,
  // and the CPU maps NaN to 0 (the JIT's tests hold the fused op to eager relu's results).
  if (relu)
    check(launch::relu_inplace(code(y.dtype()), bytes(y), y.numel(), stream(dev.index)),
          "conv2d_bias_act (relu)");
  return {y};
}

// inputs (filter [KH,KW,C,O], dy [N,OH,OW,O]) -> dx [N,H,W,C]
std::vector<Tensor> conv_input_kernel(std::span<const Tensor> in, const Attrs& a,
                                      std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard guard(dev.index);
  SuspendHooks quiet;
  expect_dtype(is_floating(out[0].dtype), "conv2d_backprop_input", "f32 and f64", in);
  const Tensor w = dense(in[0]), dy = dense(in[1]);
  if (out[0].shape.numel() == 0 || w.numel() == 0 || dy.numel() == 0)
    return {zeros_on(out[0], dev)};
  const Tensor dx = Tensor::empty(out[0].shape, out[0].dtype, dev);
  const Window g = window(dx.shape(), dy.shape(), w.dim(0), w.dim(1), a);
  const DType dt = dx.dtype();
  const int64_t O = w.dim(3), M = g.N * g.OH * g.OW, K = g.KH * g.KW * g.C;
  const int64_t es = static_cast<int64_t>(size_of(dt));
  const MatrixRef wt{w.raw_data(), O, true};  // w^T [O, K]: w^T[o, k] = w[k*O + o]
  if (pointwise(g)) {                         // dx is dcol
    gemm(dt, M, O, K, {dy.raw_data(), O, false}, wt, bytes(dx), nullptr, false, false, dev.index);
    return {dx};
  }
  const int64_t rows = chunk_rows(M, K, dt);
  // One chunk covers every image and writes all of dx; several add their taps into zeros.
  const bool accumulate = rows < M;
  if (accumulate)
    check(cudaMemsetAsync(bytes(dx), 0, static_cast<size_t>(dx.numel() * es), stream(dev.index)),
          "conv2d_backprop_input (zeroing)");
  const Tensor dcol = Tensor::empty(Shape{rows, K}, dt, dev);
  for (int64_t m0 = 0; m0 < M; m0 += rows) {
    const int64_t r = std::min(rows, M - m0);
    gemm(dt, r, O, K, {cbytes(dy) + m0 * O * es, O, false}, wt, bytes(dcol), nullptr, false, false,
         dev.index);
    check(launch::col2im(code(dt), bytes(dx), dcol.raw_data(), g, m0, r, accumulate,
                         stream(dev.index)),
          "conv2d_backprop_input (col2im)");
  }
  return {dx};
}

// inputs (x [N,H,W,C], dy [N,OH,OW,O]) -> dw [KH,KW,C,O]
std::vector<Tensor> conv_filter_kernel(std::span<const Tensor> in, const Attrs& a,
                                       std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard guard(dev.index);
  SuspendHooks quiet;
  expect_dtype(is_floating(out[0].dtype), "conv2d_backprop_filter", "f32 and f64", in);
  const Tensor x = dense(in[0]), dy = dense(in[1]);
  if (out[0].shape.numel() == 0 || x.numel() == 0 || dy.numel() == 0)
    return {zeros_on(out[0], dev)};
  const Tensor dw = Tensor::empty(out[0].shape, out[0].dtype, dev);
  const Window g = window(x.shape(), dy.shape(), dw.dim(0), dw.dim(1), a);
  const DType dt = dw.dtype();
  const int64_t O = dw.dim(3), M = g.N * g.OH * g.OW, K = g.KH * g.KW * g.C;
  const int64_t es = static_cast<int64_t>(size_of(dt));
  if (pointwise(g)) {  // col^T is x^T [K, M]: x^T[k, m] = x[m*K + k]
    gemm(dt, K, M, O, {x.raw_data(), K, true}, {dy.raw_data(), O, false}, bytes(dw), nullptr, false,
         false, dev.index);
    return {dw};
  }
  const int64_t rows = chunk_rows(M, K, dt);
  const Tensor col = Tensor::empty(Shape{rows, K}, dt, dev);
  for (int64_t m0 = 0; m0 < M; m0 += rows) {
    const int64_t r = std::min(rows, M - m0);
    check(launch::im2col(code(dt), bytes(col), x.raw_data(), g, m0, r, stream(dev.index)),
          "conv2d_backprop_filter (im2col)");
    // col^T [K, r]: col^T[k, m] = col[m*K + k]; the first chunk writes dw, the others add.
    gemm(dt, K, r, O, {col.raw_data(), K, true}, {cbytes(dy) + m0 * O * es, O, false}, bytes(dw),
         nullptr, false, m0 > 0, dev.index);
  }
  return {dw};
}

// ---- pooling -------------------------------------------------------------------------------
template <bool IsMax>
std::vector<Tensor> pool_kernel(std::span<const Tensor> in, const Attrs& a,
                                std::span<const TensorType> out) {
  const char* op = IsMax ? "max_pool2d" : "avg_pool2d";
  const Device dev = in[0].device();
  DeviceGuard guard(dev.index);
  SuspendHooks quiet;
  expect_dtype(out[0].dtype != DType::boolean, op, "u8, i32, i64, f32 and f64", in);
  const Tensor x = dense(in[0]);
  const Tensor y = Tensor::empty(out[0].shape, out[0].dtype, dev);
  if (y.numel() == 0) return {y};
  const auto& win = a.ints("window");
  const Window g = window(x.shape(), y.shape(), win[0], win[1], a);
  check(IsMax ? launch::max_pool(code(y.dtype()), bytes(y), x.raw_data(), g, stream(dev.index))
              : launch::avg_pool(code(y.dtype()), bytes(y), x.raw_data(), g, stream(dev.index)),
        op);
  return {y};
}

// inputs (x [N,H,W,C], y and dy [N,OH,OW,C]) -> dx [N,H,W,C]
std::vector<Tensor> max_pool_grad_kernel(std::span<const Tensor> in, const Attrs& a,
                                         std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard guard(dev.index);
  SuspendHooks quiet;
  expect_dtype(is_floating(out[0].dtype), "max_pool2d_grad", "f32 and f64", in);
  const Tensor x = dense(in[0]), y = dense(in[1]), dy = dense(in[2]);
  if (out[0].shape.numel() == 0 || dy.numel() == 0) return {zeros_on(out[0], dev)};
  const Tensor dx = Tensor::empty(out[0].shape, out[0].dtype, dev);
  const auto& win = a.ints("window");
  const Window g = window(x.shape(), dy.shape(), win[0], win[1], a);
  const Tensor idx = Tensor::empty(dy.shape(), DType::i64, dev);
  const int dt = code(dx.dtype());
  check(launch::max_pool_argmax(dt, idx.mutable_data<int64_t>(), x.raw_data(), y.raw_data(), g,
                                stream(dev.index)),
        "max_pool2d_grad (routing)");
  check(launch::max_pool_grad(dt, bytes(dx), idx.data<int64_t>(), dy.raw_data(), g,
                              stream(dev.index)),
        "max_pool2d_grad");
  return {dx};
}

// inputs (x [N,H,W,C], y [N,OH,OW,C], values [N,H,W,C]) -> [N,OH,OW,C]
std::vector<Tensor> max_pool_select_kernel(std::span<const Tensor> in, const Attrs& a,
                                           std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard guard(dev.index);
  SuspendHooks quiet;
  expect_dtype(is_floating(out[0].dtype), "max_pool2d_select", "f32 and f64", in);
  const Tensor x = dense(in[0]), y = dense(in[1]), v = dense(in[2]);
  if (out[0].shape.numel() == 0 || x.numel() == 0) return {zeros_on(out[0], dev)};
  const Tensor r = Tensor::empty(out[0].shape, out[0].dtype, dev);
  const auto& win = a.ints("window");
  const Window g = window(x.shape(), y.shape(), win[0], win[1], a);
  check(launch::max_pool_select(code(r.dtype()), bytes(r), x.raw_data(), y.raw_data(), v.raw_data(),
                                g, stream(dev.index)),
        "max_pool2d_select");
  return {r};
}

// input dy [N,OH,OW,C]; attr input_sizes -> dx [N,H,W,C]
std::vector<Tensor> avg_pool_grad_kernel(std::span<const Tensor> in, const Attrs& a,
                                         std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard guard(dev.index);
  SuspendHooks quiet;
  expect_dtype(is_floating(out[0].dtype), "avg_pool2d_grad", "f32 and f64", in);
  const Tensor dy = dense(in[0]);
  if (out[0].shape.numel() == 0 || dy.numel() == 0) return {zeros_on(out[0], dev)};
  const Tensor dx = Tensor::empty(out[0].shape, out[0].dtype, dev);
  const auto& win = a.ints("window");
  const Window g = window(dx.shape(), dy.shape(), win[0], win[1], a);
  check(launch::avg_pool_grad(code(dx.dtype()), bytes(dx), dy.raw_data(), g, stream(dev.index)),
        "avg_pool2d_grad");
  return {dx};
}

void reg(const char* op, KernelFn fn) {
  registry().mutable_op(op).set_kernel(DeviceType::cuda, fn);
}

KILN_STATIC_INIT {
  reg("conv2d", conv2d_kernel);
  reg("conv2d_bias_act", conv2d_bias_act_kernel);
  reg("conv2d_backprop_input", conv_input_kernel);
  reg("conv2d_backprop_filter", conv_filter_kernel);
  reg("max_pool2d", pool_kernel<true>);
  reg("avg_pool2d", pool_kernel<false>);
  reg("max_pool2d_grad", max_pool_grad_kernel);
  reg("max_pool2d_select", max_pool_select_kernel);
  reg("avg_pool2d_grad", avg_pool_grad_kernel);
};

}  // namespace
}  // namespace kiln::cuda
