// VJP rules of the contractions and windowed ops (core/ops_nn.cpp) and of their backward
// primitives (core/ops_nn_grad.cpp), written with public ops and registry primitives only, so
// an outer tape records them (higher order) and a tracer captures them.
//
//   matmul                  ga = g @ b^T, gb = a^T @ g (1-D operands and batch broadcasting)
//   conv2d                  gx = conv2d_backprop_input, gw = conv2d_backprop_filter
//   max_pool2d              gx = max_pool2d_grad(x, y, g)
//   max_pool2d_grad         g_grad = max_pool2d_select(x, y, g)   (x and y: routing only)
//   max_pool2d_select       g_values = max_pool2d_grad(x, y, g)
//   avg_pool2d              gx = avg_pool2d_grad(g)
//   conv2d_backprop_input   linear in (filter, grad): conv2d_backprop_filter and conv2d
//   conv2d_backprop_filter  linear in (x, grad): conv2d_backprop_input and conv2d
//   avg_pool2d_grad         linear in grad: avg_pool2d

#include <kiln/core/registry.h>
// registry.h first: grad_util.h uses VjpFn.
#include <kiln/autograd/grad_util.h>
#include <kiln/core/nn_grad.h>

namespace kiln::autograd {
namespace {

using Grads = std::vector<Tensor>;
using In = std::span<const Tensor>;

// ---- matmul ------------------------------------------------------------------------------
// Swaps the last two dims.
Tensor mT(const Tensor& t) {
  std::vector<int64_t> perm(static_cast<size_t>(t.rank()));
  for (size_t i = 0; i < perm.size(); ++i)
    perm[i] = static_cast<int64_t>(i);
  std::swap(perm[perm.size() - 1], perm[perm.size() - 2]);
  return transpose(t, perm);
}

Shape with_last(const Shape& s, size_t drop, std::initializer_list<int64_t> tail) {
  std::vector<int64_t> d(s.begin(), s.end() - static_cast<std::ptrdiff_t>(drop));
  d.insert(d.end(), tail);
  return Shape(d);
}

// NumPy semantics: a 1-D a [K] is the matrix [1,K], a 1-D b [K] is [K,1]; the dims they add
// are absent from the output, so g is reshaped to batch + [M,N] first. The gradients of
// broadcast batch dims are summed back (unbroadcast), then reshaped to the operand's shape.
Grads matmul_vjp(In in, const Attrs&, In, In g) {
  const bool want_a = needs_grad(0), want_b = needs_grad(1);
  const Tensor& a = in[0];
  const Tensor& b = in[1];
  const Tensor a2 = a.rank() == 1 ? reshape(a, Shape{1, a.dim(0)}) : a;
  const Tensor b2 = b.rank() == 1 ? reshape(b, Shape{b.dim(0), 1}) : b;
  const int64_t m = a2.dim(a2.rank() - 2), n = b2.dim(b2.rank() - 1);
  Tensor g2 = g[0];
  if (a.rank() == 1 || b.rank() == 1) {
    const size_t drop = (a.rank() == 1 ? 0 : 1) + (b.rank() == 1 ? 0 : 1);
    g2 = reshape(g2, with_last(g2.shape(), drop, {m, n}));
  }
  Tensor ga, gb;
  if (want_a) {
    ga = unbroadcast(matmul(g2, mT(b2)), a2.shape());
    if (a.rank() == 1) ga = reshape(ga, a.shape());
  }
  if (want_b) {
    gb = unbroadcast(matmul(mT(a2), g2), b2.shape());
    if (b.rank() == 1) gb = reshape(gb, b.shape());
  }
  return {ga, gb};
}

// ---- conv2d and its backward primitives ----------------------------------------------------
Padding padding_of(const Attrs& a) {
  return a.str("padding") == "SAME" ? Padding::same : Padding::valid;
}

Grads conv2d_vjp(In in, const Attrs& a, In, In g) {
  const Tensor& x = in[0];
  const Tensor& w = in[1];
  const auto& s = a.ints("strides");
  const auto& d = a.ints("dilations");
  const Padding p = padding_of(a);
  const bool want0 = needs_grad(0), want1 = needs_grad(1);
  Grads r(2);
  if (want0) r[0] = conv2d_backprop_input(x.shape(), w, g[0], s, p, d);
  if (want1) r[1] = conv2d_backprop_filter(x, w.shape(), g[0], s, p, d);
  return r;
}

// dx = B(w, dy), bilinear: <gg, B(w, dy)> = <conv2d(gg, w), dy>.
Grads conv2d_backprop_input_vjp(In in, const Attrs& a, In, In g) {
  const Tensor& w = in[0];
  const Tensor& dy = in[1];
  const auto& s = a.ints("strides");
  const auto& d = a.ints("dilations");
  const Padding p = padding_of(a);
  const bool want0 = needs_grad(0), want1 = needs_grad(1);
  Grads r(2);
  if (want0) r[0] = conv2d_backprop_filter(g[0], w.shape(), dy, s, p, d);
  if (want1) r[1] = conv2d(g[0], w, s, p, d);
  return r;
}

// dw = F(x, dy), bilinear: <gg, F(x, dy)> = <conv2d(x, gg), dy>.
Grads conv2d_backprop_filter_vjp(In in, const Attrs& a, In, In g) {
  const Tensor& x = in[0];
  const Tensor& dy = in[1];
  const auto& s = a.ints("strides");
  const auto& d = a.ints("dilations");
  const Padding p = padding_of(a);
  const bool want0 = needs_grad(0), want1 = needs_grad(1);
  Grads r(2);
  if (want0) r[0] = conv2d_backprop_input(x.shape(), g[0], dy, s, p, d);
  if (want1) r[1] = conv2d(x, g[0], s, p, d);
  return r;
}

// ---- pooling -----------------------------------------------------------------------------
Grads max_pool2d_vjp(In in, const Attrs& a, In out, In g) {
  return {max_pool2d_grad(in[0], out[0], g[0], a.ints("window"), a.ints("strides"), padding_of(a))};
}

// max_pool2d_grad and max_pool2d_select are adjoint linear maps in their last input; the
// routing is piecewise constant in x and y, which get no gradient.
Grads max_pool2d_grad_vjp(In in, const Attrs& a, In, In g) {
  return {
      Tensor(), Tensor(),
      max_pool2d_select(in[0], in[1], g[0], a.ints("window"), a.ints("strides"), padding_of(a))};
}

Grads max_pool2d_select_vjp(In in, const Attrs& a, In, In g) {
  return {Tensor(), Tensor(),
          max_pool2d_grad(in[0], in[1], g[0], a.ints("window"), a.ints("strides"), padding_of(a))};
}

Grads avg_pool2d_vjp(In in, const Attrs& a, In, In g) {
  return {avg_pool2d_grad(in[0].shape(), g[0], a.ints("window"), a.ints("strides"), padding_of(a))};
}

// avg_pool2d_grad is the transpose of avg_pool2d (a linear map), so its VJP is avg_pool2d.
Grads avg_pool2d_grad_vjp(In, const Attrs& a, In, In g) {
  return {avg_pool2d(g[0], a.ints("window"), a.ints("strides"), padding_of(a))};
}

}  // namespace

KILN_STATIC_INIT {
  register_vjp("matmul", matmul_vjp, kVjpNeedsInputs);
  register_vjp("conv2d", conv2d_vjp, kVjpNeedsInputs);
  register_vjp("conv2d_backprop_input", conv2d_backprop_input_vjp, kVjpNeedsInputs);
  register_vjp("conv2d_backprop_filter", conv2d_backprop_filter_vjp, kVjpNeedsInputs);
  register_vjp("max_pool2d", max_pool2d_vjp, kVjpNeedsAll);
  register_vjp("max_pool2d_grad", max_pool2d_grad_vjp, kVjpNeedsInputs);
  register_vjp("max_pool2d_select", max_pool2d_select_vjp, kVjpNeedsInputs);
  register_vjp("avg_pool2d", avg_pool2d_vjp, kVjpNeedsNothing);
  register_vjp("avg_pool2d_grad", avg_pool2d_grad_vjp, kVjpNeedsNothing);
};

}  // namespace kiln::autograd
