// Convolution kernels on CUDA (launch_nn.h): im2col and its adjoint col2im, around which
// nn_kernels.cpp runs cublasLt GEMMs, a direct convolution for the integer dtypes, and the
// relu of conv2d_bias_act. One
// thread per element written, grid-stride, int64 indexing. col2im gathers (each thread sums
// the patch entries of its own input element, taps in (kh, kw) order) instead of scattering
// with atomics: no two threads write one element, so the result is deterministic.

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "grid.cuh"
#include "launch_nn.h"

namespace kiln::cuda::launch {
namespace {

// col[t], t = r*K + k: row m = m0 + r is output pixel (n, oh, ow), column k is tap (kh, kw)
// and channel c; it reads x at (n, oh*SH + kh*DH - PT, ow*SW + kw*DW - PL, c), or is 0 there
// in the padding: the element conv_loops (backends/cpu/conv.cpp) multiplies by w[kh, kw, c, :].
template <class T>
__global__ void im2col_k(T* col, const T* x, Window g, int64_t m0, int64_t rows) {
  const int64_t K = g.KH * g.KW * g.C;
  KILN_GRID_LOOP(t, rows * K) {
    const int64_t m = m0 + t / K, k = t % K;
    const int64_t c = k % g.C, kw = (k / g.C) % g.KW, kh = k / (g.C * g.KW);
    const int64_t ow = m % g.OW, oh = (m / g.OW) % g.OH, n = m / (g.OW * g.OH);
    const int64_t ih = oh * g.SH + kh * g.DH - g.PT;
    const int64_t iw = ow * g.SW + kw * g.DW - g.PL;
    const bool inside = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
    col[t] = inside ? x[((n * g.H + ih) * g.W + iw) * g.C + c] : T(0);
  }
}

// dx[i], i = ((n*H + ih)*W + iw)*C + c for images n >= n0 (t counts from image n0's first
// element): the taps (kh, kw) whose output pixel (oh, ow) read (ih, iw) are those with
// ih = oh*SH + kh*DH - PT, i.e. oh = (ih + PT - kh*DH) / SH when that divides exactly and
// 0 <= oh < OH (the same along W): conv_input_loops' rule (backends/cpu/conv_grad.cpp).
template <class T>
__global__ void col2im_k(T* dx, const T* col, Window g, int64_t m0, int64_t rows, int64_t n0,
                         int64_t count, bool accumulate) {
  const int64_t K = g.KH * g.KW * g.C;
  KILN_GRID_LOOP(t, count) {
    const int64_t i = n0 * g.H * g.W * g.C + t;
    const int64_t c = i % g.C, iw = (i / g.C) % g.W, ih = (i / (g.C * g.W)) % g.H;
    const int64_t n = i / (g.C * g.W * g.H);
    T acc = T(0);
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      const int64_t th = ih + g.PT - kh * g.DH;
      if (th < 0 || th % g.SH != 0 || th / g.SH >= g.OH) continue;
      const int64_t oh = th / g.SH;
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const int64_t tw = iw + g.PL - kw * g.DW;
        if (tw < 0 || tw % g.SW != 0 || tw / g.SW >= g.OW) continue;
        const int64_t ow = tw / g.SW;
        const int64_t m = (n * g.OH + oh) * g.OW + ow;
        if (m < m0 || m >= m0 + rows) continue;  // in another chunk of rows
        acc += col[(m - m0) * K + (kh * g.KW + kw) * g.C + c];
      }
    }
    dx[i] = accumulate ? dx[i] + acc : acc;
  }
}

// The accumulator of conv_direct: the CPU's sums wrap in T (u8, i32, i64; signed overflow is
// undefined in C++, so the wrap is done in the unsigned type of the same width, which gives
// the two's complement result) and bool sums 0/1 products in int64, true when nonzero.
template <class T>
struct DirectAcc;
template <>
struct DirectAcc<bool> {
  using type = int64_t;
};
template <>
struct DirectAcc<uint8_t> {
  using type = uint32_t;  // reduced mod 256 by the final cast, as the CPU's u8 sum
};
template <>
struct DirectAcc<int32_t> {
  using type = uint32_t;
};
template <>
struct DirectAcc<int64_t> {
  using type = uint64_t;
};

// y[t], t = ((n*OH + oh)*OW + ow)*O + o: conv_loops (backends/cpu/conv.cpp) for one output
// element, taps in the padding skipped.
template <class T>
__global__ void conv_direct_k(T* y, const T* x, const T* w, Window g, int64_t O) {
  using Acc = typename DirectAcc<T>::type;
  KILN_GRID_LOOP(t, g.N * g.OH * g.OW * O) {
    const int64_t o = t % O, p = t / O;
    const int64_t ow = p % g.OW, oh = (p / g.OW) % g.OH, n = p / (g.OW * g.OH);
    Acc acc = 0;
    for (int64_t kh = 0; kh < g.KH; ++kh) {
      const int64_t ih = oh * g.SH + kh * g.DH - g.PT;
      if (ih < 0 || ih >= g.H) continue;
      for (int64_t kw = 0; kw < g.KW; ++kw) {
        const int64_t iw = ow * g.SW + kw * g.DW - g.PL;
        if (iw < 0 || iw >= g.W) continue;
        const T* xp = x + ((n * g.H + ih) * g.W + iw) * g.C;
        const T* wp = w + (kh * g.KW + kw) * g.C * O + o;
        for (int64_t c = 0; c < g.C; ++c)
          acc += static_cast<Acc>(xp[c]) * static_cast<Acc>(wp[c * O]);
      }
    }
    if constexpr (std::is_same_v<T, bool>)
      y[t] = acc != 0;
    else
      y[t] = static_cast<T>(acc);
  }
}

template <class T>
__global__ void relu_inplace_k(T* y, int64_t n) {
  KILN_GRID_LOOP(i, n) {
    const T v = y[i];
    y[i] = v > T(0) ? v : T(0);
  }
}

}  // namespace

int im2col(int dtype, void* col, const void* x, const Window& g, int64_t m0, int64_t rows,
           void* stream) {
  const int64_t n = rows * g.KH * g.KW * g.C;
  if (n == 0) return 0;
  return floating(dtype, [&](auto tag) {
    using T = decltype(tag);
    im2col_k<<<blocks_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<T*>(col), static_cast<const T*>(x), g, m0, rows);
  });
}

int col2im(int dtype, void* dx, const void* col, const Window& g, int64_t m0, int64_t rows,
           bool accumulate, void* stream) {
  const int64_t per_image = g.OH * g.OW;
  if (rows <= 0 || per_image == 0 || g.H * g.W * g.C == 0) return 0;
  // The images rows [m0, m0 + rows) belong to; no other element of dx gets a contribution.
  const int64_t n0 = m0 / per_image, n1 = (m0 + rows - 1) / per_image;
  const int64_t count = (n1 - n0 + 1) * g.H * g.W * g.C;
  return floating(dtype, [&](auto tag) {
    using T = decltype(tag);
    col2im_k<<<blocks_for(count), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<T*>(dx), static_cast<const T*>(col), g, m0, rows, n0, count, accumulate);
  });
}

int relu_inplace(int dtype, void* y, int64_t n, void* stream) {
  if (n == 0) return 0;
  return floating(dtype, [&](auto tag) {
    using T = decltype(tag);
    relu_inplace_k<<<blocks_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(static_cast<T*>(y),
                                                                                 n);
  });
}

int conv_direct(int dtype, void* y, const void* x, const void* w, const Window& g, int64_t O,
                void* stream) {
  const int64_t n = g.N * g.OH * g.OW * O;
  if (n == 0) return 0;
  auto go = [&](auto tag) {
    using T = decltype(tag);
    conv_direct_k<<<blocks_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<T*>(y), static_cast<const T*>(x), static_cast<const T*>(w), g, O);
  };
  return visit_dtypes<kBool, kU8, kI32, kI64>(dtype, go);
}

}  // namespace kiln::cuda::launch
