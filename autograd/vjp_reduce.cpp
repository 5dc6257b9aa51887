// VJP rules of the reductions (core/ops_reduce.cpp): reduce_sum, reduce_max, reduce_min and
// reduce_prod, written with public ops only. argmax/argmin are marked not differentiable.
//
// Every reduction has attrs `axes` (sorted, normalized; all axes when reducing everything)
// and `keepdims`. The output gradient is brought back to the input's rank by re-inserting the
// reduced axes as size-1 dims (when keepdims was false), then broadcast to the input's shape.

// registry.h first: grad_util.h uses VjpFn without including it.
#include <kiln/core/registry.h>

#include <kiln/autograd/grad_util.h>

namespace kiln::autograd {
namespace {

using Grads = std::vector<Tensor>;
using In = std::span<const Tensor>;

// `t` (shaped like the reduction's output) with the reduced axes back as size-1 dims.
Tensor keep_dims(Tensor t, const Attrs& attrs) {
  if (attrs.b("keepdims")) return t;
  for (int64_t axis : attrs.ints("axes"))  // ascending, so each index is final when inserted
    t = expand_dims(t, axis);
  return t;
}

// broadcast_to(g, x.shape()) is right when x's reduced dims are known (a -1 elsewhere keeps
// g's own dim, which is x's). An unknown reduced dim is read at run time: g * ones_like(x)
// (the tape keeps a symbolic x with unknown dims instead of a placeholder, see tape.cpp).
Grads reduce_sum_vjp(In in, const Attrs& attrs, In, In g) {
  if (!is_floating(in[0].dtype())) return {Tensor()};
  const Shape& xs = in[0].shape();
  for (int64_t a : attrs.ints("axes"))
    if (xs[static_cast<size_t>(a)] < 0) return {keep_dims(g[0], attrs) * ones_like(in[0])};
  return {broadcast_to(keep_dims(g[0], attrs), xs)};
}

// reduce_max / reduce_min. Tie rule: the gradient of each output is split EQUALLY among all
// the input elements that attain the extreme value (mask = x == y, g * mask / count), as
// TensorFlow does; with no tie the whole gradient goes to the unique extreme element. A NaN
// output matches no element, so NaN rows get no gradient.
Grads reduce_extreme_vjp(In in, const Attrs& attrs, In out, In g) {
  const Tensor& x = in[0];
  if (!is_floating(x.dtype())) return {Tensor()};
  const auto& axes = attrs.ints("axes");
  Tensor y = keep_dims(out[0], attrs);
  Tensor mask = cast(x == y, x.dtype());
  Tensor count = sum(mask, axes, /*keepdims=*/true);
  return {mask * (keep_dims(g[0], attrs) / count)};
}

// Exclusive products along the last axis of a [K, n] tensor: out[k, i] = prod_{j<i} t[k, j]
// (reverse = false) or prod_{j>i} t[k, j] (reverse = true). A Hillis-Steele scan of
// ceil(log2 n) steps, each a multiply by a shifted copy (slice + pad with 1s): only products,
// so it is exact at zeros and differentiable again.
Tensor exclusive_products(const Tensor& t, int64_t n, bool reverse) {
  Tensor acc = t;
  for (int64_t s = 1; s < n; s *= 2) {
    Tensor shifted = reverse ? pad(slice(acc, 1, s, n), {{0, 0}, {0, s}}, 1.0)
                             : pad(slice(acc, 1, 0, n - s), {{0, 0}, {s, 0}}, 1.0);
    acc = acc * shifted;
  }
  return reverse ? pad(slice(acc, 1, 1, n), {{0, 0}, {0, 1}}, 1.0)
                 : pad(slice(acc, 1, 0, n - 1), {{0, 0}, {1, 0}}, 1.0);
}

// reduce_prod: d y / d x_i is the product of the OTHER elements of x_i's group, computed as
// exclusive prefix products times exclusive suffix products (as TensorFlow does), never as
// y / x_i -- that is 0/0 at zeros. The result is exact with any number of zeros, and its own
// gradient (second order) is right there too, which a where(x == 0, ...) formula would lose.
// The reduced axes are moved last and flattened into one axis of n elements.
Grads reduce_prod_vjp(In in, const Attrs& attrs, In, In g) {
  const Tensor& x = in[0];
  if (!is_floating(x.dtype())) return {Tensor()};
  const auto& axes = attrs.ints("axes");
  const Shape& xs = x.shape();
  std::vector<int64_t> perm, inverse(static_cast<size_t>(xs.rank()));
  std::vector<bool> reduced(static_cast<size_t>(xs.rank()), false);
  int64_t n = 1;
  for (int64_t a : axes) {
    KILN_CHECK(xs[static_cast<size_t>(a)] >= 0,
               "reduce_prod gradient: reduced dim {} of {} is unknown", a, x.type_str());
    reduced[static_cast<size_t>(a)] = true;
    n *= xs[static_cast<size_t>(a)];
  }
  if (n == 0) return {zeros_like(x)};
  for (int64_t d = 0; d < xs.rank(); ++d)
    if (!reduced[static_cast<size_t>(d)]) perm.push_back(d);
  for (int64_t a : axes)
    perm.push_back(a);
  Shape moved;
  for (size_t i = 0; i < perm.size(); ++i) {
    inverse[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
    moved.push_back(xs[static_cast<size_t>(perm[i])]);
  }
  Tensor flat = reshape(transpose(x, perm), Shape{-1, n});
  Tensor others = exclusive_products(flat, n, false) * exclusive_products(flat, n, true);
  others = transpose(reshape(others, moved), inverse);
  return {keep_dims(g[0], attrs) * others};
}

KILN_STATIC_INIT {
  register_vjp("reduce_sum", reduce_sum_vjp, kVjpNeedsNothing);
  register_vjp("reduce_max", reduce_extreme_vjp, kVjpNeedsAll);
  register_vjp("reduce_min", reduce_extreme_vjp, kVjpNeedsAll);
  register_vjp("reduce_prod", reduce_prod_vjp, kVjpNeedsInputs);
};

}  // namespace
}  // namespace kiln::autograd
