// VJP rules of the elementwise primitives (core/ops_elementwise.cpp), written with public ops
// only so that an outer tape records them (higher-order gradients) and a tracer captures them.
//
// Each rule declares the least it reads (VjpNeeds): what it does not declare arrives as a
// data-less placeholder whose dtype and shape alone are valid. Binary ops broadcast NumPy
// style, so their gradients are summed back to each operand's shape with unbroadcast().

#include <cmath>

// registry.h first: grad_util.h uses VjpFn without including it.
#include <kiln/core/registry.h>

#include <kiln/autograd/grad_util.h>

namespace kiln::autograd {
namespace {

using Grads = std::vector<Tensor>;
using In = std::span<const Tensor>;

// ---- unary -----------------------------------------------------------------------------------

Grads neg_vjp(In, const Attrs&, In, In g) {
  return {-g[0]};
}

Grads abs_vjp(In in, const Attrs&, In, In g) {
  return {g[0] * sign(in[0])};
}

Grads square_vjp(In in, const Attrs&, In, In g) {
  return {g[0] * (in[0] * 2.0)};
}

// sign, floor, ceil and round are piecewise constant: their gradient is zero (at the jumps it
// is undefined; zero is what TensorFlow and JAX return as well).
Grads zero_vjp(In in, const Attrs&, In, In) {
  return {zeros_like(in[0])};
}

// relu(x) > 0 exactly where x > 0; the gradient at x == 0 is taken as 0.
Grads relu_vjp(In, const Attrs&, In out, In g) {
  return {where(out[0] > 0.0, g[0], Scalar(0.0))};
}

Grads exp_vjp(In, const Attrs&, In out, In g) {
  return {g[0] * out[0]};
}

Grads log_vjp(In in, const Attrs&, In, In g) {
  return {g[0] / in[0]};
}

Grads log1p_vjp(In in, const Attrs&, In, In g) {
  return {g[0] / (in[0] + 1.0)};
}

Grads expm1_vjp(In, const Attrs&, In out, In g) {
  return {g[0] * (out[0] + 1.0)};
}

// d sqrt(x) = 1 / (2 sqrt(x))
Grads sqrt_vjp(In, const Attrs&, In out, In g) {
  return {g[0] * 0.5 / out[0]};
}

// d x^-1/2 = -1/2 x^-3/2 = -1/2 y^3
Grads rsqrt_vjp(In, const Attrs&, In out, In g) {
  const Tensor& y = out[0];
  return {g[0] * (y * y * y * -0.5)};
}

Grads tanh_vjp(In, const Attrs&, In out, In g) {
  const Tensor& y = out[0];
  return {g[0] * (1.0 - y * y)};
}

Grads sigmoid_vjp(In, const Attrs&, In out, In g) {
  const Tensor& y = out[0];
  return {g[0] * (y * (1.0 - y))};
}

// d erf(x) = 2 / sqrt(pi) exp(-x^2)
Grads erf_vjp(In in, const Attrs&, In, In g) {
  return {g[0] * (exp(-square(in[0])) * (2.0 / std::sqrt(M_PI)))};
}

Grads sin_vjp(In in, const Attrs&, In, In g) {
  return {g[0] * cos(in[0])};
}

Grads cos_vjp(In in, const Attrs&, In, In g) {
  return {-(g[0] * sin(in[0]))};
}

Grads copy_vjp(In, const Attrs&, In, In g) {
  return {g[0]};
}

// The gradient flows back (cast to the input's dtype) only between floating-point types, as
// in TensorFlow; integer and bool casts cut it.
Grads cast_vjp(In in, const Attrs&, In out, In g) {
  if (!is_floating(in[0].dtype()) || !is_floating(out[0].dtype())) return {Tensor()};
  return {cast(g[0], in[0].dtype())};
}

// ---- binary ----------------------------------------------------------------------------------

Grads add_vjp(In in, const Attrs&, In, In g) {
  return {unbroadcast(g[0], in[0].shape()), unbroadcast(g[0], in[1].shape())};
}

Grads sub_vjp(In in, const Attrs&, In, In g) {
  return {unbroadcast(g[0], in[0].shape()), unbroadcast(-g[0], in[1].shape())};
}

Grads mul_vjp(In in, const Attrs&, In, In g) {
  return {unbroadcast(g[0] * in[1], in[0].shape()), unbroadcast(g[0] * in[0], in[1].shape())};
}

// y = a / b: da = g / b, db = -g a / b^2 = -da * a / b.
Grads div_vjp(In in, const Attrs&, In, In g) {
  Tensor ga = g[0] / in[1];
  Tensor gb = -(ga * in[0]) / in[1];
  return {unbroadcast(ga, in[0].shape()), unbroadcast(gb, in[1].shape())};
}

// y = a^b: da = g b a^(b-1); db = g log(a) y where a > 0, else 0 (a^b is real there only for
// integer b, where the derivative in b is not defined; TensorFlow returns 0 as well). The log
// reads a "safe" base (1 where a <= 0) so that no NaN enters even a higher-order gradient.
Grads pow_vjp(In in, const Attrs&, In out, In g) {
  const Tensor& a = in[0];
  const Tensor& b = in[1];
  Tensor ga = g[0] * b * pow(a, b - 1.0);
  Tensor positive = a > 0.0;
  Tensor log_a = log(where(positive, a, Scalar(1.0)));
  Tensor gb = where(positive, g[0] * log_a * out[0], Scalar(0.0));
  return {unbroadcast(ga, a.shape()), unbroadcast(gb, b.shape())};
}

// Tie rule: where a == b the whole gradient goes to a (the first operand), none to b:
// maximum routes to a where a >= b, to b where a < b; minimum to a where a <= b, to b where
// a > b. (Splitting ties in halves would be the other common choice; TensorFlow also sends
// the whole gradient to the first operand.)
Grads maximum_vjp(In in, const Attrs&, In, In g) {
  Tensor to_a = in[0] >= in[1];
  return {unbroadcast(where(to_a, g[0], Scalar(0.0)), in[0].shape()),
          unbroadcast(where(to_a, Scalar(0.0), g[0]), in[1].shape())};
}

Grads minimum_vjp(In in, const Attrs&, In, In g) {
  Tensor to_a = in[0] <= in[1];
  return {unbroadcast(where(to_a, g[0], Scalar(0.0)), in[0].shape()),
          unbroadcast(where(to_a, Scalar(0.0), g[0]), in[1].shape())};
}

// select(cond, a, b) with 3-way broadcasting: the condition gets no gradient.
Grads select_vjp(In in, const Attrs&, In, In g) {
  const Tensor& cond = in[0];
  return {Tensor(), unbroadcast(where(cond, g[0], Scalar(0.0)), in[1].shape()),
          unbroadcast(where(cond, Scalar(0.0), g[0]), in[2].shape())};
}

KILN_STATIC_INIT {
  register_vjp("neg", neg_vjp, kVjpNeedsNothing);
  register_vjp("abs", abs_vjp, kVjpNeedsInputs);
  register_vjp("square", square_vjp, kVjpNeedsInputs);
  register_vjp("sign", zero_vjp, kVjpNeedsNothing);
  register_vjp("floor", zero_vjp, kVjpNeedsNothing);
  register_vjp("ceil", zero_vjp, kVjpNeedsNothing);
  register_vjp("round", zero_vjp, kVjpNeedsNothing);
  register_vjp("relu", relu_vjp, kVjpNeedsOutputs);
  register_vjp("exp", exp_vjp, kVjpNeedsOutputs);
  register_vjp("log", log_vjp, kVjpNeedsInputs);
  register_vjp("log1p", log1p_vjp, kVjpNeedsInputs);
  register_vjp("expm1", expm1_vjp, kVjpNeedsOutputs);
  register_vjp("sqrt", sqrt_vjp, kVjpNeedsOutputs);
  register_vjp("rsqrt", rsqrt_vjp, kVjpNeedsOutputs);
  register_vjp("tanh", tanh_vjp, kVjpNeedsOutputs);
  register_vjp("sigmoid", sigmoid_vjp, kVjpNeedsOutputs);
  register_vjp("erf", erf_vjp, kVjpNeedsInputs);
  register_vjp("sin", sin_vjp, kVjpNeedsInputs);
  register_vjp("cos", cos_vjp, kVjpNeedsInputs);
  register_vjp("copy", copy_vjp, kVjpNeedsNothing);
  register_vjp("cast", cast_vjp, kVjpNeedsNothing);
  register_vjp("add", add_vjp, kVjpNeedsNothing);
  register_vjp("sub", sub_vjp, kVjpNeedsNothing);
  register_vjp("mul", mul_vjp, kVjpNeedsInputs);
  register_vjp("div", div_vjp, kVjpNeedsInputs);
  register_vjp("pow", pow_vjp, kVjpNeedsAll);
  register_vjp("maximum", maximum_vjp, kVjpNeedsInputs);
  register_vjp("minimum", minimum_vjp, kVjpNeedsInputs);
  register_vjp("select", select_vjp, kVjpNeedsInputs);
};

}  // namespace
}  // namespace kiln::autograd
