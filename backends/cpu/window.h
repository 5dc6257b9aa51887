#pragma once

// Internal to the CPU backend: the geometry of a windowed op (conv2d, pooling and their
// gradients) along H and W, NHWC with TensorFlow padding, shared by backends/cpu/conv.cpp and
// backends/cpu/conv_grad.cpp.

#include <algorithm>
#include <cstdint>
#include <string>

#include <kiln/backends/cpu/onednn.h>
#include <kiln/core/attrs.h>
#include <kiln/core/shape.h>
#include <kiln/core/window_util.h>

namespace kiln::cpu {

// The geometry of one windowed op along H and W.
struct Window {
  int64_t N, H, W, C;      // (forward) input
  int64_t OH, OW;          // (forward) output
  int64_t KH, KW;          // window
  int64_t SH, SW;          // strides
  int64_t DH = 1, DW = 1;  // dilations
  int64_t PT = 0, PL = 0;  // padding before (top, left)
  int64_t PB = 0, PR = 0;  // padding after
};

// TensorFlow's padding: SAME pads detail::same_pad_total, the smaller half before.
inline void set_padding(Window& g, const std::string& padding) {
  if (padding != "SAME") return;
  const int64_t th = detail::same_pad_total(g.H, g.OH, g.KH, g.SH, g.DH);
  const int64_t tw = detail::same_pad_total(g.W, g.OW, g.KW, g.SW, g.DW);
  g.PT = th / 2;
  g.PB = th - g.PT;
  g.PL = tw / 2;
  g.PR = tw - g.PL;
}

// `in` the forward input's shape [N,H,W,C], `out` the forward output's [N,OH,OW,*]; a (kh, kw)
// window; strides, optional dilations and padding from the op's attributes.
inline Window geometry(const Shape& in, const Shape& out, int64_t kh, int64_t kw, const Attrs& a) {
  Window g;
  g.N = in[0];
  g.H = in[1];
  g.W = in[2];
  g.C = in[3];
  g.OH = out[1];
  g.OW = out[2];
  g.KH = kh;
  g.KW = kw;
  g.SH = a.ints("strides")[0];
  g.SW = a.ints("strides")[1];
  if (a.has("dilations")) {
    g.DH = a.ints("dilations")[0];
    g.DW = a.ints("dilations")[1];
  }
  set_padding(g, a.str("padding"));
  return g;
}

// The in-bounds part [h0,h1) x [w0,w1) of output (oh, ow)'s pooling window (undilated).
struct Span2 {
  int64_t h0, h1, w0, w1;
};
inline Span2 window_span(const Window& g, int64_t oh, int64_t ow) {
  return {std::max<int64_t>(oh * g.SH - g.PT, 0), std::min<int64_t>(oh * g.SH - g.PT + g.KH, g.H),
          std::max<int64_t>(ow * g.SW - g.PL, 0), std::min<int64_t>(ow * g.SW - g.PL + g.KW, g.W)};
}

// The part of a oneDNN primitive cache key that identifies g.
inline std::string window_key(const Window& g) {
  return dims_key(
      {g.N, g.H, g.W, g.C, g.OH, g.OW, g.KH, g.KW, g.SH, g.SW, g.DH, g.DW, g.PT, g.PL, g.PB, g.PR});
}

}  // namespace kiln::cpu
