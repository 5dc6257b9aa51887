#pragma once

// Internal to backends/cuda: blas.cpp's cublasLt GEMM on raw device pointers, for kernels that
// multiply parts of buffers rather than whole Tensors (nn_kernels.cpp's convolutions).

#include <cstdint>

#include <kiln/core/dtype.h>

namespace kiln::cuda {

// A row-major matrix operand X [rows, cols] in device memory: X[i, j] is data[i*ld + j], or,
// when `transposed`, data[j*ld + i] (the transpose of a row-major [cols, rows] matrix, read
// with op T rather than copied).
struct MatrixRef {
  const void* data = nullptr;
  int64_t ld = 0;
  bool transposed = false;
};

// c[M, N] (dense, row-major) = act(a[M, K] x b[K, N] + bias), plus c's previous contents when
// `accumulate`; bias (N values, 16-byte aligned) may be null, relu only with a bias (cublasLt's
// RELU_BIAS epilogue, which keeps NaN where the CPU's relu gives 0). f32 (TF32
// when allow_tf32()) or f64; on device `device`'s stream. M, K, N > 0.
void gemm(DType dt, int64_t M, int64_t K, int64_t N, const MatrixRef& a, const MatrixRef& b,
          void* c, const void* bias, bool relu, bool accumulate, int device);

}  // namespace kiln::cuda
