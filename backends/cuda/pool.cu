// Pooling kernels on CUDA (launch_nn.h), with the CPU loops' semantics (backends/cpu/conv.cpp,
// conv_grad.cpp): windows clipped to the input (padding never enters a max, nor an average's
// count), max propagating NaN, averages summed in double, the max's gradient routed to the
// first element of the window (row-major) equal to y.
//
// Forward and max_pool2d_select: one thread per output element, scanning its window.
// Gradients: one thread per input element, gathering from the windows that cover it in
// row-major window order, the order in which the CPU loops add into dx, so the sums round the
// same way. No atomics: the CPU's semantics need none (a window's gradient goes to one element,
// or is spread evenly), and a gather is deterministic. max_pool2d_grad takes two passes: the
// first finds each window's routed element (max_pool_argmax), so that the gather compares an
// index instead of rescanning every covering window.

#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "grid.cuh"
#include "launch_nn.h"

namespace kiln::cuda::launch {
namespace {

__device__ inline int64_t imin(int64_t a, int64_t b) {
  return a < b ? a : b;
}
__device__ inline int64_t imax(int64_t a, int64_t b) {
  return a > b ? a : b;
}

template <class T>
__device__ inline bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T>)
    return isnan(v);
  else
    return false;
}

// An output element (n, oh, ow, c) of an NHWC tensor [N, OH, OW, C], from its flat index.
struct Out {
  int64_t n, oh, ow, c;
};
__device__ inline Out out_at(const Window& g, int64_t t) {
  return {t / (g.C * g.OW * g.OH), (t / (g.C * g.OW)) % g.OH, (t / g.C) % g.OW, t % g.C};
}
// An input element (n, ih, iw, c) of [N, H, W, C], from its flat index.
struct In {
  int64_t n, ih, iw, c;
};
__device__ inline In in_at(const Window& g, int64_t t) {
  return {t / (g.C * g.W * g.H), (t / (g.C * g.W)) % g.H, (t / g.C) % g.W, t % g.C};
}

// The in-bounds part [h0, h1) x [w0, w1) of window (oh, ow): backends/cpu/window.h's span.
struct Span {
  int64_t h0, h1, w0, w1;
};
__device__ inline Span span_of(const Window& g, int64_t oh, int64_t ow) {
  const int64_t hs = oh * g.SH - g.PT, ws = ow * g.SW - g.PL;
  return {imax(hs, 0), imin(hs + g.KH, g.H), imax(ws, 0), imin(ws + g.KW, g.W)};
}
__device__ inline int64_t count_of(const Span& s) {
  return imax((s.h1 - s.h0) * (s.w1 - s.w0), 1);
}

// The outputs along one axis whose window covers input index i: window o covers
// [o*S - P, o*S - P + K), so o*S <= i + P < o*S + K, i.e. o in [first, last] below.
__device__ inline int64_t first_cover(int64_t i, int64_t P, int64_t K, int64_t S) {
  const int64_t t = i + P - K;  // o*S > t
  return t < 0 ? 0 : t / S + 1;
}
__device__ inline int64_t last_cover(int64_t i, int64_t P, int64_t S, int64_t O) {
  return imin((i + P) / S, O - 1);  // i + P >= 0: the padding before is never negative
}

// The spatial index ih*W + iw of the first element (row-major) of window s of image n,
// channel c, equal to yv (or NaN when yv is NaN); -1 if none: max_pool_route's rule.
template <class T>
__device__ int64_t first_match(const T* x, T yv, const Window& g, const Span& s, int64_t n,
                               int64_t c) {
  for (int64_t ih = s.h0; ih < s.h1; ++ih)
    for (int64_t iw = s.w0; iw < s.w1; ++iw) {
      const T xv = x[((n * g.H + ih) * g.W + iw) * g.C + c];
      if (xv == yv || (is_nan(xv) && is_nan(yv))) return ih * g.W + iw;
    }
  return -1;
}

// `init` is -inf for floats, the lowest value for integers (as the CPU loops start).
template <class T>
__global__ void max_pool_k(T* y, const T* x, Window g, T init) {
  KILN_GRID_LOOP(t, g.N * g.OH * g.OW * g.C) {
    const Out o = out_at(g, t);
    const Span s = span_of(g, o.oh, o.ow);
    T m = init;
    for (int64_t ih = s.h0; ih < s.h1; ++ih)
      for (int64_t iw = s.w0; iw < s.w1; ++iw) {
        const T v = x[((o.n * g.H + ih) * g.W + iw) * g.C + o.c];
        // A NaN replaces the running max, and once it is NaN nothing replaces it.
        if (v > m || is_nan(v)) m = v;
      }
    y[t] = m;
  }
}

template <class T>
__global__ void avg_pool_k(T* y, const T* x, Window g) {
  KILN_GRID_LOOP(t, g.N * g.OH * g.OW * g.C) {
    const Out o = out_at(g, t);
    const Span s = span_of(g, o.oh, o.ow);
    double sum = 0;
    for (int64_t ih = s.h0; ih < s.h1; ++ih)
      for (int64_t iw = s.w0; iw < s.w1; ++iw)
        sum += static_cast<double>(x[((o.n * g.H + ih) * g.W + iw) * g.C + o.c]);
    y[t] = static_cast<T>(sum / static_cast<double>(count_of(s)));
  }
}

template <class T>
__global__ void max_pool_argmax_k(int64_t* idx, const T* x, const T* y, Window g) {
  KILN_GRID_LOOP(t, g.N * g.OH * g.OW * g.C) {
    const Out o = out_at(g, t);
    idx[t] = first_match(x, y[t], g, span_of(g, o.oh, o.ow), o.n, o.c);
  }
}

template <class T>
__global__ void max_pool_grad_k(T* dx, const int64_t* idx, const T* dy, Window g) {
  KILN_GRID_LOOP(t, g.N * g.H * g.W * g.C) {
    const In i = in_at(g, t);
    const int64_t me = i.ih * g.W + i.iw;
    const int64_t oh1 = last_cover(i.ih, g.PT, g.SH, g.OH);
    const int64_t ow1 = last_cover(i.iw, g.PL, g.SW, g.OW);
    T acc = T(0);
    for (int64_t oh = first_cover(i.ih, g.PT, g.KH, g.SH); oh <= oh1; ++oh)
      for (int64_t ow = first_cover(i.iw, g.PL, g.KW, g.SW); ow <= ow1; ++ow) {
        const int64_t o = ((i.n * g.OH + oh) * g.OW + ow) * g.C + i.c;
        if (idx[o] == me) acc += dy[o];
      }
    dx[t] = acc;
  }
}

template <class T>
__global__ void max_pool_select_k(T* out, const T* x, const T* y, const T* values, Window g) {
  KILN_GRID_LOOP(t, g.N * g.OH * g.OW * g.C) {
    const Out o = out_at(g, t);
    const int64_t j = first_match(x, y[t], g, span_of(g, o.oh, o.ow), o.n, o.c);
    out[t] = j < 0 ? T(0) : values[(o.n * g.H * g.W + j) * g.C + o.c];
  }
}

template <class T>
__global__ void avg_pool_grad_k(T* dx, const T* dy, Window g) {
  KILN_GRID_LOOP(t, g.N * g.H * g.W * g.C) {
    const In i = in_at(g, t);
    const int64_t oh1 = last_cover(i.ih, g.PT, g.SH, g.OH);
    const int64_t ow1 = last_cover(i.iw, g.PL, g.SW, g.OW);
    T acc = T(0);
    for (int64_t oh = first_cover(i.ih, g.PT, g.KH, g.SH); oh <= oh1; ++oh)
      for (int64_t ow = first_cover(i.iw, g.PL, g.KW, g.SW); ow <= ow1; ++ow) {
        const T count = static_cast<T>(count_of(span_of(g, oh, ow)));
        acc += dy[((i.n * g.OH + oh) * g.OW + ow) * g.C + i.c] / count;
      }
    dx[t] = acc;
  }
}

template <class T>
T lowest() {
  if constexpr (std::is_floating_point_v<T>)
    return -std::numeric_limits<T>::infinity();
  else
    return std::numeric_limits<T>::lowest();
}

// Runs go(T{}) for the pooling dtypes (all but bool); cudaErrorInvalidValue for others.
template <class Go>
int pooling_dtypes(int dtype, Go&& go) {
  return visit_dtypes<kU8, kI32, kI64, kF32, kF64>(dtype, static_cast<Go&&>(go));
}

int64_t outputs(const Window& g) {
  return g.N * g.OH * g.OW * g.C;
}
int64_t inputs(const Window& g) {
  return g.N * g.H * g.W * g.C;
}

}  // namespace

int max_pool(int dtype, void* y, const void* x, const Window& g, void* stream) {
  const int64_t n = outputs(g);
  if (n == 0) return 0;
  return pooling_dtypes(dtype, [&](auto tag) {
    using T = decltype(tag);
    max_pool_k<<<blocks_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<T*>(y), static_cast<const T*>(x), g, lowest<T>());
  });
}

int avg_pool(int dtype, void* y, const void* x, const Window& g, void* stream) {
  const int64_t n = outputs(g);
  if (n == 0) return 0;
  return pooling_dtypes(dtype, [&](auto tag) {
    using T = decltype(tag);
    avg_pool_k<<<blocks_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<T*>(y), static_cast<const T*>(x), g);
  });
}

int max_pool_argmax(int dtype, int64_t* idx, const void* x, const void* y, const Window& g,
                    void* stream) {
  const int64_t n = outputs(g);
  if (n == 0) return 0;
  return floating(dtype, [&](auto tag) {
    using T = decltype(tag);
    max_pool_argmax_k<<<blocks_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        idx, static_cast<const T*>(x), static_cast<const T*>(y), g);
  });
}

int max_pool_grad(int dtype, void* dx, const int64_t* idx, const void* dy, const Window& g,
                  void* stream) {
  const int64_t n = inputs(g);
  if (n == 0) return 0;
  return floating(dtype, [&](auto tag) {
    using T = decltype(tag);
    max_pool_grad_k<<<blocks_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<T*>(dx), idx, static_cast<const T*>(dy), g);
  });
}

int max_pool_select(int dtype, void* out, const void* x, const void* y, const void* values,
                    const Window& g, void* stream) {
  const int64_t n = outputs(g);
  if (n == 0) return 0;
  return floating(dtype, [&](auto tag) {
    using T = decltype(tag);
    max_pool_select_k<<<blocks_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<T*>(out), static_cast<const T*>(x), static_cast<const T*>(y),
        static_cast<const T*>(values), g);
  });
}

int avg_pool_grad(int dtype, void* dx, const void* dy, const Window& g, void* stream) {
  const int64_t n = inputs(g);
  if (n == 0) return 0;
  return floating(dtype, [&](auto tag) {
    using T = decltype(tag);
    avg_pool_grad_k<<<blocks_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<T*>(dx), static_cast<const T*>(dy), g);
  });
}

}  // namespace kiln::cuda::launch
