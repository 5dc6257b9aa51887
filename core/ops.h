#pragma once

// The public ops (DESIGN.md section 3). Each is a thin function over the registry's
// primitives; composites (softmax, gelu, var, cross-entropy, ...) are written with other
// public ops, so they are differentiable and traceable for free.

#include <vector>

#include <kiln/core/tensor.h>

namespace kiln {

// ---- creation ------------------------------------------------------------------------------
Tensor zeros(const Shape& shape, DType dtype = f32);
Tensor ones(const Shape& shape, DType dtype = f32);
Tensor full(const Shape& shape, Scalar value, DType dtype = f32);
Tensor zeros_like(const Tensor& x);
Tensor ones_like(const Tensor& x);
Tensor full_like(const Tensor& x, Scalar value);
// [start, stop) by step; the dtype defaults to i64 for integer arguments, f32 otherwise.
Tensor arange(Scalar start, Scalar stop, Scalar step = 1);
Tensor arange(Scalar start, Scalar stop, Scalar step, DType dtype);
Tensor linspace(double start, double stop, int64_t n, DType dtype = f32);
Tensor eye(int64_t n, DType dtype = f32);
Tensor iota(const Shape& shape, int64_t axis, DType dtype);

// ---- elementwise unary ---------------------------------------------------------------------
Tensor abs(const Tensor& x);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor log1p(const Tensor& x);
Tensor expm1(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor square(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);  // exact: x * Phi(x)
Tensor erf(const Tensor& x);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
Tensor floor(const Tensor& x);
Tensor ceil(const Tensor& x);
Tensor round(const Tensor& x);  // half to even, as NumPy and TF
Tensor sign(const Tensor& x);
Tensor logical_not(const Tensor& x);

// ---- elementwise binary (NumPy broadcasting; promotion bool<u8<i32<i64<f32<f64) ---------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);        // integers divide truly, into f32
Tensor floor_div(const Tensor& a, const Tensor& b);  // rounds toward -inf
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor equal(const Tensor& a, const Tensor& b);
Tensor not_equal(const Tensor& a, const Tensor& b);
Tensor less(const Tensor& a, const Tensor& b);
Tensor less_equal(const Tensor& a, const Tensor& b);
Tensor greater(const Tensor& a, const Tensor& b);
Tensor greater_equal(const Tensor& a, const Tensor& b);
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);

#define KILN_DECLARE_SCALAR_BINARY(name)  \
  Tensor name(const Tensor& a, Scalar b); \
  Tensor name(Scalar a, const Tensor& b);
KILN_DECLARE_SCALAR_BINARY(add)
KILN_DECLARE_SCALAR_BINARY(sub)
KILN_DECLARE_SCALAR_BINARY(mul)
KILN_DECLARE_SCALAR_BINARY(div)
KILN_DECLARE_SCALAR_BINARY(floor_div)
KILN_DECLARE_SCALAR_BINARY(pow)
KILN_DECLARE_SCALAR_BINARY(maximum)
KILN_DECLARE_SCALAR_BINARY(minimum)
KILN_DECLARE_SCALAR_BINARY(equal)
KILN_DECLARE_SCALAR_BINARY(not_equal)
KILN_DECLARE_SCALAR_BINARY(less)
KILN_DECLARE_SCALAR_BINARY(less_equal)
KILN_DECLARE_SCALAR_BINARY(greater)
KILN_DECLARE_SCALAR_BINARY(greater_equal)
#undef KILN_DECLARE_SCALAR_BINARY

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, Scalar b);
Tensor where(const Tensor& cond, Scalar a, const Tensor& b);
Tensor clip(const Tensor& x, Scalar lo, Scalar hi);
Tensor cast(const Tensor& x, DType dtype);
Tensor stop_gradient(const Tensor& x);

// ---- reductions (axes = {} means all axes) ----------------------------------------------------
Tensor sum(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdims = false);
Tensor mean(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdims = false);
Tensor max(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdims = false);
Tensor min(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdims = false);
Tensor prod(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdims = false);
Tensor logsumexp(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdims = false);
Tensor var(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdims = false);  // ddof=0
Tensor std(const Tensor& x, std::vector<int64_t> axes = {}, bool keepdims = false);
Tensor argmax(const Tensor& x, int64_t axis);  // i64; first index of the extreme value
Tensor argmin(const Tensor& x, int64_t axis);

// ---- linear algebra and neural-network ops ----------------------------------------------------
Tensor matmul(const Tensor& a, const Tensor& b);  // batched, broadcasting batch dims
Tensor softmax(const Tensor& x, int64_t axis = -1);
Tensor log_softmax(const Tensor& x, int64_t axis = -1);

enum class Padding { valid, same };  // TensorFlow's "VALID" and "SAME"
// x NHWC, filter HWIO.
Tensor conv2d(const Tensor& x, const Tensor& filter, std::vector<int64_t> strides = {1, 1},
              Padding padding = Padding::valid, std::vector<int64_t> dilations = {1, 1});
Tensor max_pool2d(const Tensor& x, std::vector<int64_t> window, std::vector<int64_t> strides,
                  Padding padding = Padding::valid);
// Averages over the window's in-bounds elements only (TensorFlow's SAME semantics).
Tensor avg_pool2d(const Tensor& x, std::vector<int64_t> window, std::vector<int64_t> strides,
                  Padding padding = Padding::valid);
Tensor dropout(const Tensor& x, double rate, bool training);
// Per-example losses: -log softmax(logits)[label]. labels i32/i64 of shape logits.shape[:-1].
Tensor sparse_softmax_cross_entropy_with_logits(const Tensor& labels, const Tensor& logits);

// ---- shapes and data movement -----------------------------------------------------------------
Tensor reshape(const Tensor& x, const Shape& shape);  // one dim may be -1
// x's elements in like's shape; with unknown dims in like, its shape is read at run time.
Tensor reshape_like(const Tensor& x, const Tensor& like);
Tensor transpose(const Tensor& x, std::vector<int64_t> perm);
Tensor broadcast_to(const Tensor& x, const Shape& shape);
Tensor squeeze(const Tensor& x, int64_t axis);
Tensor expand_dims(const Tensor& x, int64_t axis);
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t stop, int64_t step = 1);
Tensor concat(const std::vector<Tensor>& tensors, int64_t axis);
Tensor stack(const std::vector<Tensor>& tensors, int64_t axis = 0);
std::vector<Tensor> split(const Tensor& x, int64_t n, int64_t axis = 0);
// pads: one {before, after} pair per dim.
Tensor pad(const Tensor& x, std::vector<std::pair<int64_t, int64_t>> pads, Scalar value = 0);
Tensor gather(const Tensor& x, const Tensor& indices, int64_t axis = 0);
// out = x with updates added at `indices` along `axis` (duplicates accumulate).
Tensor scatter_add(const Tensor& x, const Tensor& indices, const Tensor& updates, int64_t axis = 0);
Tensor one_hot(const Tensor& indices, int64_t depth, DType dtype = f32);

// ---- fused optimizer updates ---------------------------------------------------------------
struct AdamUpdate {
  Tensor var, m, v;
};
// One Adam step in a single pass: m' = b1 m + (1-b1) g, v' = b2 v + (1-b2) g^2,
// var' = var - lr m' / (sqrt(v') + eps), with Adam's bias correction folded into lr.
AdamUpdate adam_update(const Tensor& var, const Tensor& m, const Tensor& v, const Tensor& grad,
                       double lr, double beta1, double beta2, double eps);

// ---- operators ----------------------------------------------------------------------------
inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
inline Tensor operator-(const Tensor& a) {
  return neg(a);
}
inline Tensor operator==(const Tensor& a, const Tensor& b) {
  return equal(a, b);
}
inline Tensor operator!=(const Tensor& a, const Tensor& b) {
  return not_equal(a, b);
}
inline Tensor operator<(const Tensor& a, const Tensor& b) {
  return less(a, b);
}
inline Tensor operator<=(const Tensor& a, const Tensor& b) {
  return less_equal(a, b);
}
inline Tensor operator>(const Tensor& a, const Tensor& b) {
  return greater(a, b);
}
inline Tensor operator>=(const Tensor& a, const Tensor& b) {
  return greater_equal(a, b);
}

#define KILN_SCALAR_OPERATOR(sym, fn)                                          \
  template <class S>                                                           \
  requires std::is_arithmetic_v<S> Tensor operator sym(const Tensor& a, S b) { \
    return fn(a, Scalar(b));                                                   \
  }                                                                            \
  template <class S>                                                           \
  requires std::is_arithmetic_v<S> Tensor operator sym(S a, const Tensor& b) { \
    return fn(Scalar(a), b);                                                   \
  }
KILN_SCALAR_OPERATOR(+, add)
KILN_SCALAR_OPERATOR(-, sub)
KILN_SCALAR_OPERATOR(*, mul)
KILN_SCALAR_OPERATOR(/, div)
KILN_SCALAR_OPERATOR(==, equal)
KILN_SCALAR_OPERATOR(!=, not_equal)
KILN_SCALAR_OPERATOR(<, less)
KILN_SCALAR_OPERATOR(<=, less_equal)
KILN_SCALAR_OPERATOR(>, greater)
KILN_SCALAR_OPERATOR(>=, greater_equal)
#undef KILN_SCALAR_OPERATOR

}  // namespace kiln
