// CPU kernels of conv2d, max_pool2d and avg_pool2d (NHWC, filter HWIO, TensorFlow padding).
// f32 runs cached oneDNN primitives; the filter is reordered into the layout oneDNN's
// fastest convolution asks for (a cached reorder primitive). Other dtypes, and shapes oneDNN
// refuses, run direct loops parallel over output rows.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <type_traits>
#include <unordered_map>

#include <kiln/backends/cpu/kernel_util.h>
#include <kiln/backends/cpu/onednn.h>
#include <kiln/backends/cpu/parallel.h>
#include <kiln/backends/cpu/window.h>

namespace kiln::cpu {
namespace {

using dims = dnnl::memory::dims;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

// ---- conv2d ------------------------------------------------------------------------------
// y = conv(x, w), plus bias (one value per output channel) and a relu post-op when asked;
// false when oneDNN refuses the configuration.
bool conv_onednn(const Window& g, int64_t O, const float* x, const float* w, float* y,
                 const float* bias = nullptr, bool relu = false) {
  const std::string key = "conv2d:f32:" + window_key(g) + ":" + std::to_string(O) +
                          (bias ? ":bias" : "") + (relu ? ":relu" : "");
  auto entry = onednn_cached(key, [&] {
    auto& eng = onednn_engine();
    dnnl::memory::desc src({g.N, g.C, g.H, g.W}, dt::f32, tag::nhwc);
    dnnl::memory::desc wuser({O, g.C, g.KH, g.KW}, dt::f32, tag::hwio);
    dnnl::memory::desc wany({O, g.C, g.KH, g.KW}, dt::f32, tag::any);
    dnnl::memory::desc dst({g.N, O, g.OH, g.OW}, dt::f32, tag::nhwc);
    dnnl::memory::desc bmd({O}, dt::f32, tag::x);
    const auto kind = dnnl::prop_kind::forward_inference;
    const auto alg = dnnl::algorithm::convolution_direct;
    const dims strides{g.SH, g.SW}, dil{g.DH - 1, g.DW - 1}, pl{g.PT, g.PL}, pr{g.PB, g.PR};
    dnnl::convolution_forward::desc d =
        bias ? dnnl::convolution_forward::desc(kind, alg, src, wany, bmd, dst, strides, dil, pl, pr)
             : dnnl::convolution_forward::desc(kind, alg, src, wany, dst, strides, dil, pl, pr);
    dnnl::primitive_attr attr;
    if (relu) {
      dnnl::post_ops ops;
      ops.append_eltwise(1.f, dnnl::algorithm::eltwise_relu, 0.f, 0.f);
      attr.set_post_ops(ops);
    }
    dnnl::convolution_forward::primitive_desc pd(d, attr, eng);
    OneDnnEntry e;
    e.prims.push_back(dnnl::convolution_forward(pd));
    e.descs = {src, wuser, dst, pd.weights_desc(), bmd};
    if (pd.weights_desc() != wuser)
      e.prims.push_back(
          dnnl::reorder(dnnl::reorder::primitive_desc(eng, wuser, eng, pd.weights_desc())));
    return e;
  });
  if (!entry->ok) return false;
  auto& eng = onednn_engine();
  auto& s = onednn_stream();
  dnnl::memory xm(entry->descs[0], eng, const_cast<float*>(x));
  dnnl::memory wm(entry->descs[1], eng, const_cast<float*>(w));
  dnnl::memory ym(entry->descs[2], eng, y);
  if (entry->prims.size() > 1) {
    dnnl::memory wr(entry->descs[3], eng);
    entry->prims[1].execute(s, {{DNNL_ARG_FROM, wm}, {DNNL_ARG_TO, wr}});
    wm = wr;
  }
  std::unordered_map<int, dnnl::memory> args{
      {DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym}};
  if (bias)
    args.emplace(DNNL_ARG_BIAS, dnnl::memory(entry->descs[4], eng, const_cast<float*>(bias)));
  entry->prims[0].execute(s, args);
  s.wait();
  return true;
}

template <class T>
void conv_loops(const Window& g, int64_t O, const T* x, const T* w, T* y) {
  using Acc = std::conditional_t<std::is_same_v<T, bool>, int64_t, T>;
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, g.OW * O * g.C));
  parallel_for(g.N * g.OH, grain, [&](int64_t begin, int64_t end) {
    std::vector<Acc> acc(static_cast<size_t>(O));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / g.OH, oh = r % g.OH;
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        std::fill(acc.begin(), acc.end(), Acc{});
        for (int64_t kh = 0; kh < g.KH; ++kh) {
          const int64_t ih = oh * g.SH + kh * g.DH - g.PT;
          if (ih < 0 || ih >= g.H) continue;
          for (int64_t kw = 0; kw < g.KW; ++kw) {
            const int64_t iw = ow * g.SW + kw * g.DW - g.PL;
            if (iw < 0 || iw >= g.W) continue;
            const T* xp = x + ((n * g.H + ih) * g.W + iw) * g.C;
            const T* wp = w + (kh * g.KW + kw) * g.C * O;
            for (int64_t c = 0; c < g.C; ++c) {
              const Acc xv = static_cast<Acc>(xp[c]);
              const T* wr = wp + c * O;
              for (int64_t o = 0; o < O; ++o)
                acc[static_cast<size_t>(o)] += xv * static_cast<Acc>(wr[o]);
            }
          }
        }
        T* yp = y + ((n * g.OH + oh) * g.OW + ow) * O;
        for (int64_t o = 0; o < O; ++o)
          yp[o] = static_cast<T>(acc[static_cast<size_t>(o)]);
      }
    }
  });
}

std::vector<Tensor> conv2d_kernel(std::span<const Tensor> in, const Attrs& a,
                                  std::span<const TensorType> out_types) {
  const Tensor x = dense(in[0]), w = dense(in[1]);
  Tensor y = alloc(out_types[0]);
  if (y.numel() == 0) return {y};
  const Window g = geometry(x.shape(), out_types[0].shape, w.dim(0), w.dim(1), a);
  const int64_t O = w.dim(3);
  if (y.dtype() == DType::f32 && x.numel() > 0 &&
      conv_onednn(g, O, x.data<float>(), w.data<float>(), y.mutable_data<float>()))
    return {y};
  visit_dtype(y.dtype(), [&](auto t) {
    using T = typename decltype(t)::type;
    conv_loops<T>(g, O, x.data<T>(), w.data<T>(), y.mutable_data<T>());
  });
  return {y};
}

// act(conv2d(x, w) + bias) for f32 (the JIT's conv2d_bias_act): one oneDNN convolution with
// a bias and a relu post-op, or the loops followed by the epilogue where oneDNN refuses.
std::vector<Tensor> conv2d_bias_act_kernel(std::span<const Tensor> in, const Attrs& a,
                                           std::span<const TensorType> out_types) {
  const Tensor x = dense(in[0]), w = dense(in[1]), bias = dense(in[2]);
  const bool relu = a.str("act") == "relu";
  Tensor y = alloc(out_types[0]);
  if (y.numel() == 0) return {y};
  const Window g = geometry(x.shape(), out_types[0].shape, w.dim(0), w.dim(1), a);
  const int64_t O = w.dim(3);
  KILN_CHECK(bias.numel() == O, "conv2d_bias_act: bias {} does not match the output {}",
             bias.type_str(), y.type_str());
  const float* pb = bias.data<float>();
  float* py = y.mutable_data<float>();
  if (x.numel() > 0 && conv_onednn(g, O, x.data<float>(), w.data<float>(), py, pb, relu))
    return {y};
  conv_loops<float>(g, O, x.data<float>(), w.data<float>(), py);
  const int64_t pixels = y.numel() / O;
  parallel_for(pixels, std::max<int64_t>(1, 16384 / O), [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p)
      for (int64_t o = 0; o < O; ++o) {
        const float v = py[p * O + o] + pb[o];
        py[p * O + o] = relu ? (v > 0.f ? v : 0.f) : v;
      }
  });
  return {y};
}

// ---- pooling -----------------------------------------------------------------------------
bool pool_onednn(const Window& g, bool is_max, const float* x, float* y) {
  const std::string key =
      std::string(is_max ? "max_pool2d" : "avg_pool2d") + ":f32:" + window_key(g);
  auto entry = onednn_cached(key, [&] {
    dnnl::memory::desc src({g.N, g.C, g.H, g.W}, dt::f32, tag::nhwc);
    dnnl::memory::desc dst({g.N, g.C, g.OH, g.OW}, dt::f32, tag::nhwc);
    dnnl::pooling_forward::desc d(
        dnnl::prop_kind::forward_inference,
        is_max ? dnnl::algorithm::pooling_max : dnnl::algorithm::pooling_avg_exclude_padding, src,
        dst, {g.SH, g.SW}, {g.KH, g.KW}, {g.PT, g.PL}, {g.PB, g.PR});
    dnnl::pooling_forward::primitive_desc pd(d, onednn_engine());
    OneDnnEntry e;
    e.prims.push_back(dnnl::pooling_forward(pd));
    e.descs = {src, dst};
    return e;
  });
  if (!entry->ok) return false;
  auto& eng = onednn_engine();
  auto& s = onednn_stream();
  dnnl::memory xm(entry->descs[0], eng, const_cast<float*>(x));
  dnnl::memory ym(entry->descs[1], eng, y);
  entry->prims[0].execute(s, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DST, ym}});
  s.wait();
  return true;
}

// Integer averages truncate toward zero.
template <class T>
void pool_loops(const Window& g, bool is_max, const T* x, T* y) {
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, g.OW * g.C * g.KH * g.KW));
  parallel_for(g.N * g.OH, grain, [&](int64_t begin, int64_t end) {
    std::vector<double> sum(static_cast<size_t>(g.C));
    std::vector<T> mx(static_cast<size_t>(g.C));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t n = r / g.OH, oh = r % g.OH;
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const Span2 s = window_span(g, oh, ow);
        std::fill(sum.begin(), sum.end(), 0.0);
        std::fill(mx.begin(), mx.end(), std::numeric_limits<T>::lowest());
        if constexpr (std::is_floating_point_v<T>)
          std::fill(mx.begin(), mx.end(), -std::numeric_limits<T>::infinity());
        for (int64_t ih = s.h0; ih < s.h1; ++ih)
          for (int64_t iw = s.w0; iw < s.w1; ++iw) {
            const T* xp = x + ((n * g.H + ih) * g.W + iw) * g.C;
            if (is_max) {
              for (int64_t c = 0; c < g.C; ++c) {
                // NaN propagates, as in TensorFlow: a NaN replaces the running max, and once the
                // max is NaN nothing replaces it (every comparison with NaN is false).
                T& m = mx[static_cast<size_t>(c)];
                if constexpr (std::is_floating_point_v<T>) {
                  if (xp[c] > m || std::isnan(xp[c])) m = xp[c];
                } else {
                  if (xp[c] > m) m = xp[c];
                }
              }
            } else {
              for (int64_t c = 0; c < g.C; ++c)
                sum[static_cast<size_t>(c)] += static_cast<double>(xp[c]);
            }
          }
        T* yp = y + ((n * g.OH + oh) * g.OW + ow) * g.C;
        const double count =
            static_cast<double>(std::max<int64_t>((s.h1 - s.h0) * (s.w1 - s.w0), 1));
        for (int64_t c = 0; c < g.C; ++c)
          yp[c] = is_max ? mx[static_cast<size_t>(c)]
                         : static_cast<T>(sum[static_cast<size_t>(c)] / count);
      }
    }
  });
}

// Whether x[0..n) holds a NaN.
bool any_nan(const float* x, int64_t n) {
  std::atomic<bool> found{false};
  parallel_for(n, int64_t{1} << 16, [&](int64_t begin, int64_t end) {
    bool f = false;
    for (int64_t i = begin; i < end; ++i)
      f |= std::isnan(x[i]);
    if (f) found.store(true, std::memory_order_relaxed);
  });
  return found.load(std::memory_order_relaxed);
}

template <bool IsMax>
std::vector<Tensor> pool_kernel(std::span<const Tensor> in, const Attrs& a,
                                std::span<const TensorType> out_types) {
  const Tensor x = dense(in[0]);
  Tensor y = alloc(out_types[0]);
  if (y.numel() == 0) return {y};
  const auto& win = a.ints("window");
  const Window g = geometry(x.shape(), out_types[0].shape, win[0], win[1], a);
  // oneDNN's f32 max pooling drops NaN (a window [1, NaN, 3, 4] gives 4, and an all-NaN
  // channel can give a finite value), while the loops propagate it as TensorFlow does: max
  // pooling of an input holding a NaN runs the loops, so every dtype gives the same result.
  if (y.dtype() == DType::f32 && !(IsMax && any_nan(x.data<float>(), x.numel())) &&
      pool_onednn(g, IsMax, x.data<float>(), y.mutable_data<float>()))
    return {y};
  visit_dtype(y.dtype(), [&](auto t) {
    using T = typename decltype(t)::type;
    if constexpr (std::is_same_v<T, bool>) {
      KILN_ASSERT(false, "pooling on bool should have been rejected by inference");
    } else {
      pool_loops<T>(g, IsMax, x.data<T>(), y.mutable_data<T>());
    }
  });
  return {y};
}

}  // namespace

KILN_STATIC_INIT {
  register_cpu_kernel("conv2d", conv2d_kernel);
  register_cpu_kernel("conv2d_bias_act", conv2d_bias_act_kernel);
  register_cpu_kernel("max_pool2d", pool_kernel<true>);
  register_cpu_kernel("avg_pool2d", pool_kernel<false>);
};

}  // namespace kiln::cpu
