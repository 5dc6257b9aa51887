// CPU kernels of the backward primitives of conv2d and pooling (core/nn_grad.h): NHWC, filter
// HWIO, TensorFlow padding. f32 runs cached oneDNN primitives (convolution_backward_data,
// convolution_backward_weights with the filter in the layout oneDNN asks for plus a cached
// reorder, pooling_backward for averages); f64, and configurations oneDNN refuses, run
// direct loops. Max-pool backward is a loop for every dtype: oneDNN would need the forward's
// workspace, and the loop fixes the tie rule: each window's gradient goes to the FIRST
// element (row-major over the window) equal to the pooled value y, or to the first NaN when
// y is NaN.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include <kiln/backends/cpu/kernel_util.h>
#include <kiln/backends/cpu/onednn.h>
#include <kiln/backends/cpu/parallel.h>
#include <kiln/backends/cpu/window.h>
#include <kiln/core/ops.h>

namespace kiln::cpu {
namespace {

using dims = dnnl::memory::dims;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

Tensor zeros_of(const TensorType& t) {
  Tensor r = alloc(t);
  if (r.numel() > 0)
    std::memset(const_cast<void*>(r.raw_data()), 0,
                static_cast<size_t>(r.numel()) * size_of(t.dtype));
  return r;
}

// Calls fn(TypeTag<T>) for f32 and f64 (inference admits no other dtype).
template <class Fn>
void visit_floating(DType d, Fn&& fn) {
  visit_dtype(d, [&](auto t) {
    using T = typename decltype(t)::type;
    if constexpr (std::is_floating_point_v<T>) {
      fn(t);
    } else {
      KILN_ASSERT(false, "conv/pool gradients on {} should have been rejected by inference",
                  name(d));
    }
  });
}

// The oneDNN descriptors of a convolution with geometry g and O output channels.
struct ConvDescs {
  dnnl::memory::desc src, wuser, wany, dst;
  dnnl::convolution_forward::primitive_desc fwd;
};

ConvDescs conv_descs(const Window& g, int64_t O) {
  ConvDescs c;
  c.src = dnnl::memory::desc({g.N, g.C, g.H, g.W}, dt::f32, tag::nhwc);
  c.wuser = dnnl::memory::desc({O, g.C, g.KH, g.KW}, dt::f32, tag::hwio);
  c.wany = dnnl::memory::desc({O, g.C, g.KH, g.KW}, dt::f32, tag::any);
  c.dst = dnnl::memory::desc({g.N, O, g.OH, g.OW}, dt::f32, tag::nhwc);
  dnnl::convolution_forward::desc d(dnnl::prop_kind::forward_training,
                                    dnnl::algorithm::convolution_direct, c.src, c.wany, c.dst,
                                    {g.SH, g.SW}, {g.DH - 1, g.DW - 1}, {g.PT, g.PL}, {g.PB, g.PR});
  c.fwd = dnnl::convolution_forward::primitive_desc(d, onednn_engine());
  return c;
}

// ---- conv2d_backprop_input ------------------------------------------------------------------
bool conv_input_onednn(const Window& g, int64_t O, const float* w, const float* dy, float* dx) {
  const std::string key = "conv2d_backprop_input:f32:" + window_key(g) + ":" + std::to_string(O);
  auto entry = onednn_cached(key, [&] {
    auto& eng = onednn_engine();
    ConvDescs c = conv_descs(g, O);
    dnnl::convolution_backward_data::desc d(dnnl::algorithm::convolution_direct, c.src, c.wany,
                                            c.dst, {g.SH, g.SW}, {g.DH - 1, g.DW - 1}, {g.PT, g.PL},
                                            {g.PB, g.PR});
    dnnl::convolution_backward_data::primitive_desc pd(d, eng, c.fwd);
    OneDnnEntry e;
    e.prims.push_back(dnnl::convolution_backward_data(pd));
    e.descs = {c.src, c.wuser, c.dst, pd.weights_desc()};
    if (pd.weights_desc() != c.wuser)
      e.prims.push_back(
          dnnl::reorder(dnnl::reorder::primitive_desc(eng, c.wuser, eng, pd.weights_desc())));
    return e;
  });
  if (!entry->ok) return false;
  auto& eng = onednn_engine();
  auto& s = onednn_stream();
  dnnl::memory dxm(entry->descs[0], eng, dx);
  dnnl::memory wm(entry->descs[1], eng, const_cast<float*>(w));
  dnnl::memory dym(entry->descs[2], eng, const_cast<float*>(dy));
  if (entry->prims.size() > 1) {
    dnnl::memory wr(entry->descs[3], eng);
    entry->prims[1].execute(s, {{DNNL_ARG_FROM, wm}, {DNNL_ARG_TO, wr}});
    wm = wr;
  }
  entry->prims[0].execute(
      s, {{DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, dxm}});
  s.wait();
  return true;
}

// dx[n,ih,iw,c] = sum over (kh,kw,o) with ih = oh*SH + kh*DH - PT (same along W) of
// dy[n,oh,ow,o] * w[kh,kw,c,o]. Gathered per input row, so rows run in parallel.
template <class T>
void conv_input_loops(const Window& g, int64_t O, const T* w, const T* dy, T* dx) {
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, g.W * g.C * O));
  parallel_for(g.N * g.H, grain, [&](int64_t begin, int64_t end) {
    std::vector<double> acc(static_cast<size_t>(g.C));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / g.H, ih = r % g.H;
      for (int64_t iw = 0; iw < g.W; ++iw) {
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t kh = 0; kh < g.KH; ++kh) {
          const int64_t th = ih + g.PT - kh * g.DH;
          if (th < 0 || th % g.SH != 0 || th / g.SH >= g.OH) continue;
          const int64_t oh = th / g.SH;
          for (int64_t kw = 0; kw < g.KW; ++kw) {
            const int64_t tw = iw + g.PL - kw * g.DW;
            if (tw < 0 || tw % g.SW != 0 || tw / g.SW >= g.OW) continue;
            const int64_t ow = tw / g.SW;
            const T* gp = dy + ((n * g.OH + oh) * g.OW + ow) * O;
            const T* wp = w + (kh * g.KW + kw) * g.C * O;
            for (int64_t c = 0; c < g.C; ++c) {
              const T* wr = wp + c * O;
              double s = 0;
              for (int64_t o = 0; o < O; ++o)
                s += static_cast<double>(gp[o]) * static_cast<double>(wr[o]);
              acc[static_cast<size_t>(c)] += s;
            }
          }
        }
        T* xp = dx + ((n * g.H + ih) * g.W + iw) * g.C;
        for (int64_t c = 0; c < g.C; ++c)
          xp[c] = static_cast<T>(acc[static_cast<size_t>(c)]);
      }
    }
  });
}

std::vector<Tensor> conv_input_kernel(std::span<const Tensor> in, const Attrs& a,
                                      std::span<const TensorType> out_types) {
  const Tensor w = dense(in[0]), dy = dense(in[1]);
  if (out_types[0].shape.numel() == 0 || w.numel() == 0 || dy.numel() == 0)
    return {zeros_of(out_types[0])};
  Tensor dx = alloc(out_types[0]);
  const Window g = geometry(dx.shape(), dy.shape(), w.dim(0), w.dim(1), a);
  const int64_t O = w.dim(3);
  if (dx.dtype() == DType::f32 &&
      conv_input_onednn(g, O, w.data<float>(), dy.data<float>(), dx.mutable_data<float>()))
    return {dx};
  visit_floating(dx.dtype(), [&](auto t) {
    using T = typename decltype(t)::type;
    conv_input_loops<T>(g, O, w.data<T>(), dy.data<T>(), dx.mutable_data<T>());
  });
  return {dx};
}

// ---- conv2d_backprop_filter -----------------------------------------------------------------
bool conv_filter_onednn(const Window& g, int64_t O, const float* x, const float* dy, float* dw) {
  const std::string key = "conv2d_backprop_filter:f32:" + window_key(g) + ":" + std::to_string(O);
  auto entry = onednn_cached(key, [&] {
    auto& eng = onednn_engine();
    ConvDescs c = conv_descs(g, O);
    dnnl::convolution_backward_weights::desc d(dnnl::algorithm::convolution_direct, c.src, c.wany,
                                               c.dst, {g.SH, g.SW}, {g.DH - 1, g.DW - 1},
                                               {g.PT, g.PL}, {g.PB, g.PR});
    dnnl::convolution_backward_weights::primitive_desc pd(d, eng, c.fwd);
    OneDnnEntry e;
    e.prims.push_back(dnnl::convolution_backward_weights(pd));
    e.descs = {c.src, c.wuser, c.dst, pd.diff_weights_desc()};
    if (pd.diff_weights_desc() != c.wuser)
      e.prims.push_back(
          dnnl::reorder(dnnl::reorder::primitive_desc(eng, pd.diff_weights_desc(), eng, c.wuser)));
    return e;
  });
  if (!entry->ok) return false;
  auto& eng = onednn_engine();
  auto& s = onednn_stream();
  dnnl::memory xm(entry->descs[0], eng, const_cast<float*>(x));
  dnnl::memory dwm(entry->descs[1], eng, dw);
  dnnl::memory dym(entry->descs[2], eng, const_cast<float*>(dy));
  if (entry->prims.size() > 1) {
    dnnl::memory dwr(entry->descs[3], eng);
    entry->prims[0].execute(
        s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DIFF_WEIGHTS, dwr}});
    entry->prims[1].execute(s, {{DNNL_ARG_FROM, dwr}, {DNNL_ARG_TO, dwm}});
  } else {
    entry->prims[0].execute(
        s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DIFF_WEIGHTS, dwm}});
  }
  s.wait();
  return true;
}

// dw[kh,kw,c,o] = sum over (n,oh,ow) of x[n, oh*SH + kh*DH - PT, ow*SW + kw*DW - PL, c] *
// dy[n,oh,ow,o]; parallel over (kh,kw,c).
template <class T>
void conv_filter_loops(const Window& g, int64_t O, const T* x, const T* dy, T* dw) {
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, g.N * g.OH * g.OW * O));
  parallel_for(g.KH * g.KW * g.C, grain, [&](int64_t begin, int64_t end) {
    std::vector<double> acc(static_cast<size_t>(O));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t c = r % g.C, kw = (r / g.C) % g.KW, kh = r / (g.C * g.KW);
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t oh = 0; oh < g.OH; ++oh) {
          const int64_t ih = oh * g.SH + kh * g.DH - g.PT;
          if (ih < 0 || ih >= g.H) continue;
          for (int64_t ow = 0; ow < g.OW; ++ow) {
            const int64_t iw = ow * g.SW + kw * g.DW - g.PL;
            if (iw < 0 || iw >= g.W) continue;
            const double xv = static_cast<double>(x[((n * g.H + ih) * g.W + iw) * g.C + c]);
            const T* gp = dy + ((n * g.OH + oh) * g.OW + ow) * O;
            for (int64_t o = 0; o < O; ++o)
              acc[static_cast<size_t>(o)] += xv * static_cast<double>(gp[o]);
          }
        }
      T* wp = dw + r * O;
      for (int64_t o = 0; o < O; ++o)
        wp[o] = static_cast<T>(acc[static_cast<size_t>(o)]);
    }
  });
}

std::vector<Tensor> conv_filter_kernel(std::span<const Tensor> in, const Attrs& a,
                                       std::span<const TensorType> out_types) {
  const Tensor x = dense(in[0]), dy = dense(in[1]);
  if (out_types[0].shape.numel() == 0 || x.numel() == 0 || dy.numel() == 0)
    return {zeros_of(out_types[0])};
  Tensor dw = alloc(out_types[0]);
  const Window g = geometry(x.shape(), dy.shape(), dw.dim(0), dw.dim(1), a);
  const int64_t O = dw.dim(3);
  if (dw.dtype() == DType::f32 && g.KH == 1 && g.KW == 1 && g.PT == 0 && g.PL == 0 &&
      (g.SH > 1 || g.SW > 1)) {
    // oneDNN 2.6's jit_1x1 backward-weights kernel (AVX2) sums wrongly, or never returns, for
    // a strided 1x1 window over few channels when the strides skip the input's last rows or
    // columns (x [2,8,8,1], strides (1,2)). A 1x1 window is a matrix product instead:
    // dw[c, o] = sum over output pixels of x at the pixel's input position times dy.
    SuspendHooks quiet;
    const Tensor xs =
        slice(slice(x, 1, 0, (g.OH - 1) * g.SH + 1, g.SH), 2, 0, (g.OW - 1) * g.SW + 1, g.SW);
    const Tensor rows = reshape(xs.contiguous(), Shape{g.N * g.OH * g.OW, g.C});
    return {reshape(matmul(transpose(rows, {1, 0}), reshape(dy, Shape{g.N * g.OH * g.OW, O})),
                    out_types[0].shape)};
  }
  if (dw.dtype() == DType::f32 &&
      conv_filter_onednn(g, O, x.data<float>(), dy.data<float>(), dw.mutable_data<float>()))
    return {dw};
  visit_floating(dw.dtype(), [&](auto t) {
    using T = typename decltype(t)::type;
    conv_filter_loops<T>(g, O, x.data<T>(), dy.data<T>(), dw.mutable_data<T>());
  });
  return {dw};
}

// ---- pooling --------------------------------------------------------------------------------
constexpr int64_t kChannelBlock = 64;

// Runs fn(n, c0, c1) over batch items and channel blocks in parallel. Each call owns the input
// gradient's [n, :, :, c0:c1], so pooling backward can scatter without races.
template <class Fn>
void for_batch_channel_blocks(const Window& g, Fn&& fn) {
  const int64_t blocks = (g.C + kChannelBlock - 1) / kChannelBlock;
  const int64_t work = std::max<int64_t>(1, g.OH * g.OW * g.KH * g.KW * kChannelBlock);
  parallel_for(g.N * blocks, std::max<int64_t>(1, 16384 / work), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / blocks, b = r % blocks;
      fn(n, b * kChannelBlock, std::min(g.C, (b + 1) * kChannelBlock));
    }
  });
}

// Calls route(i, o) for each window o and the first element i of x in it equal to y[o]
// (the first NaN when y[o] is NaN): the routing max_pool2d's gradient follows.
template <class T, class Route>
void max_pool_route(const Window& g, const T* x, const T* y, Route route) {
  for_batch_channel_blocks(g, [&](int64_t n, int64_t c0, int64_t c1) {
    std::vector<char> done(static_cast<size_t>(c1 - c0));
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const Span2 s = window_span(g, oh, ow);
        const int64_t o = ((n * g.OH + oh) * g.OW + ow) * g.C;
        std::fill(done.begin(), done.end(), 0);
        for (int64_t ih = s.h0; ih < s.h1; ++ih)
          for (int64_t iw = s.w0; iw < s.w1; ++iw) {
            const int64_t i = ((n * g.H + ih) * g.W + iw) * g.C;
            for (int64_t c = c0; c < c1; ++c) {
              char& d = done[static_cast<size_t>(c - c0)];
              if (d) continue;
              const T xv = x[i + c], yv = y[o + c];
              if (xv == yv || (std::isnan(xv) && std::isnan(yv))) {
                route(i + c, o + c);
                d = 1;
              }
            }
          }
      }
  });
}

template <class T>
void max_pool_grad_loops(const Window& g, const T* x, const T* y, const T* dy, T* dx) {
  max_pool_route(g, x, y, [&](int64_t i, int64_t o) { dx[i] += dy[o]; });
}

std::vector<Tensor> max_pool_select_kernel(std::span<const Tensor> in, const Attrs& a,
                                           std::span<const TensorType> out_types) {
  const Tensor x = dense(in[0]), y = dense(in[1]), v = dense(in[2]);
  Tensor out = zeros_of(out_types[0]);
  if (out.numel() == 0 || x.numel() == 0) return {out};
  const auto& win = a.ints("window");
  const Window g = geometry(x.shape(), y.shape(), win[0], win[1], a);
  visit_floating(out.dtype(), [&](auto t) {
    using T = typename decltype(t)::type;
    const T* vp = v.data<T>();
    T* op = out.mutable_data<T>();
    max_pool_route(g, x.data<T>(), y.data<T>(), [&](int64_t i, int64_t o) { op[o] = vp[i]; });
  });
  return {out};
}

std::vector<Tensor> max_pool_grad_kernel(std::span<const Tensor> in, const Attrs& a,
                                         std::span<const TensorType> out_types) {
  const Tensor x = dense(in[0]), y = dense(in[1]), dy = dense(in[2]);
  Tensor dx = zeros_of(out_types[0]);
  if (dx.numel() == 0 || dy.numel() == 0) return {dx};
  const auto& win = a.ints("window");
  const Window g = geometry(x.shape(), dy.shape(), win[0], win[1], a);
  visit_floating(dx.dtype(), [&](auto t) {
    using T = typename decltype(t)::type;
    max_pool_grad_loops<T>(g, x.data<T>(), y.data<T>(), dy.data<T>(), dx.mutable_data<T>());
  });
  return {dx};
}

bool avg_pool_grad_onednn(const Window& g, const float* dy, float* dx) {
  const std::string key = "avg_pool2d_grad:f32:" + window_key(g);
  auto entry = onednn_cached(key, [&] {
    auto& eng = onednn_engine();
    dnnl::memory::desc src({g.N, g.C, g.H, g.W}, dt::f32, tag::nhwc);
    dnnl::memory::desc dst({g.N, g.C, g.OH, g.OW}, dt::f32, tag::nhwc);
    const auto alg = dnnl::algorithm::pooling_avg_exclude_padding;
    dnnl::pooling_forward::desc fd(dnnl::prop_kind::forward_training, alg, src, dst, {g.SH, g.SW},
                                   {g.KH, g.KW}, {g.PT, g.PL}, {g.PB, g.PR});
    dnnl::pooling_forward::primitive_desc fpd(fd, eng);
    dnnl::pooling_backward::desc bd(alg, src, dst, {g.SH, g.SW}, {g.KH, g.KW}, {g.PT, g.PL},
                                    {g.PB, g.PR});
    dnnl::pooling_backward::primitive_desc pd(bd, eng, fpd);
    OneDnnEntry e;
    e.prims.push_back(dnnl::pooling_backward(pd));
    e.descs = {src, dst};
    return e;
  });
  if (!entry->ok) return false;
  auto& eng = onednn_engine();
  auto& s = onednn_stream();
  dnnl::memory dxm(entry->descs[0], eng, dx);
  dnnl::memory dym(entry->descs[1], eng, const_cast<float*>(dy));
  entry->prims[0].execute(s, {{DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DIFF_SRC, dxm}});
  s.wait();
  return true;
}

// Each output's gradient, divided by its window's in-bounds element count (as the forward),
// is added to every in-bounds element of the window. dx must start zeroed.
template <class T>
void avg_pool_grad_loops(const Window& g, const T* dy, T* dx) {
  for_batch_channel_blocks(g, [&](int64_t n, int64_t c0, int64_t c1) {
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const Span2 s = window_span(g, oh, ow);
        const T count = static_cast<T>(std::max<int64_t>((s.h1 - s.h0) * (s.w1 - s.w0), 1));
        const T* gp = dy + ((n * g.OH + oh) * g.OW + ow) * g.C;
        for (int64_t ih = s.h0; ih < s.h1; ++ih)
          for (int64_t iw = s.w0; iw < s.w1; ++iw) {
            T* xp = dx + ((n * g.H + ih) * g.W + iw) * g.C;
            for (int64_t c = c0; c < c1; ++c)
              xp[c] += gp[c] / count;
          }
      }
  });
}

std::vector<Tensor> avg_pool_grad_kernel(std::span<const Tensor> in, const Attrs& a,
                                         std::span<const TensorType> out_types) {
  const Tensor dy = dense(in[0]);
  Tensor dx = zeros_of(out_types[0]);
  if (dx.numel() == 0 || dy.numel() == 0) return {dx};
  const auto& win = a.ints("window");
  const Window g = geometry(dx.shape(), dy.shape(), win[0], win[1], a);
  if (dx.dtype() == DType::f32 &&
      avg_pool_grad_onednn(g, dy.data<float>(), dx.mutable_data<float>()))
    return {dx};
  visit_floating(dx.dtype(), [&](auto t) {
    using T = typename decltype(t)::type;
    avg_pool_grad_loops<T>(g, dy.data<T>(), dx.mutable_data<T>());
  });
  return {dx};
}

}  // namespace

KILN_STATIC_INIT {
  register_cpu_kernel("conv2d_backprop_input", conv_input_kernel);
  register_cpu_kernel("conv2d_backprop_filter", conv_filter_kernel);
  register_cpu_kernel("max_pool2d_grad", max_pool_grad_kernel);
  register_cpu_kernel("max_pool2d_select", max_pool_select_kernel);
  register_cpu_kernel("avg_pool2d_grad", avg_pool_grad_kernel);
};

}  // namespace kiln::cpu
