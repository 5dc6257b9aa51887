#pragma once

// The interface between the convolution and pooling kernels (conv.cu, pool.cu) and their
// registration (nn_kernels.cpp): plain types only, as launch.h. Every launch is asynchronous on
// `stream` and returns the launch's error code (0 for success; cudaErrorInvalidValue for a
// dtype the kernel does not take). Layouts as the CPU kernels (backends/cpu/conv.cpp,
// conv_grad.cpp): x NHWC, filter HWIO, outputs NHWC; every operand dense and row-major.

#include <cstdint>

#include "launch.h"  // the dtype codes

namespace kiln::cuda::launch {

// The geometry of one windowed op along H and W: backends/cpu/window.h's Window, computed the
// same way on the host (TensorFlow padding). Pooling windows are undilated (DH = DW = 1).
struct Window {
  int64_t N = 0, H = 0, W = 0, C = 0;  // (forward) input
  int64_t OH = 0, OW = 0;              // (forward) output
  int64_t KH = 0, KW = 0;              // window
  int64_t SH = 1, SW = 1;              // strides
  int64_t DH = 1, DW = 1;              // dilations
  int64_t PT = 0, PL = 0;              // padding before (top, left); after is implied by OH, OW
};

// ---- conv.cu ---------------------------------------------------------------------------------
// The patch matrix of conv2d seen as a GEMM: row m = (n*OH + oh)*OW + ow of the output, column
// k = (kh*KW + kw)*C + c of the filter (HWIO flattened to [KH*KW*C, O]), so that
// y[M, O] = col[M, K] x w[K, O]. Rows [m0, m0 + rows) are written to col [rows, K]; taps in the
// padding are 0. f32 and f64.
int im2col(int dtype, void* col, const void* x, const Window& g, int64_t m0, int64_t rows,
           void* stream);

// The adjoint of im2col, as a gather: each element (n, ih, iw, c) of dx sums, over the taps
// (kh, kw) in order, the entries of col [rows, K] (rows [m0, m0 + rows) of the patch matrix)
// that im2col would have read from it. Only images n that rows [m0, m0 + rows) touch are
// visited; dx is written when `accumulate` is false (then rows must cover every image), else
// added to. f32 and f64.
int col2im(int dtype, void* dx, const void* col, const Window& g, int64_t m0, int64_t rows,
           bool accumulate, void* stream);

// conv2d without a GEMM, one thread per output element, for the dtypes cuBLAS has no GEMM for
// (bool, u8, i32, i64), with the CPU loops' arithmetic: integers wrap, bool is "any x & w".
int conv_direct(int dtype, void* y, const void* x, const void* w, const Window& g, int64_t O,
                void* stream);

// y[i] = y[i] > 0 ? y[i] : 0 over n elements, in place: the relu of conv2d_bias_act and
// matmul_bias_act, with the CPU's rule for NaN and -inf (both give 0). f32 and f64.
int relu_inplace(int dtype, void* y, int64_t n, void* stream);

// ---- pool.cu ---------------------------------------------------------------------------------
// Forward pooling, one thread per output element: max propagates NaN (as the CPU loops); the
// average sums in double over the window's in-bounds elements and divides by their count
// (padding excluded), integers truncating toward zero. u8, i32, i64, f32, f64.
int max_pool(int dtype, void* y, const void* x, const Window& g, void* stream);
int avg_pool(int dtype, void* y, const void* x, const Window& g, void* stream);

// For each output element of max_pool2d, the spatial index ih*W + iw of the first element of
// its window (row-major) equal to y (the first NaN when y is NaN), or -1: the routing that
// max_pool2d_grad and max_pool2d_select share. f32 and f64.
int max_pool_argmax(int dtype, int64_t* idx, const void* x, const void* y, const Window& g,
                    void* stream);
// dx[n, ih, iw, c] = sum of dy over the windows routed to it (by argmax), in row-major window
// order, one thread per element of dx. f32 and f64.
int max_pool_grad(int dtype, void* dx, const int64_t* idx, const void* dy, const Window& g,
                  void* stream);
// out[n, oh, ow, c] = values at the element its window routes to (0 if none). f32 and f64.
int max_pool_select(int dtype, void* out, const void* x, const void* y, const void* values,
                    const Window& g, void* stream);
// dx[n, ih, iw, c] = sum over the windows covering it, in row-major window order, of
// dy / (the window's in-bounds count). f32 and f64.
int avg_pool_grad(int dtype, void* dx, const void* dy, const Window& g, void* stream);

}  // namespace kiln::cuda::launch
