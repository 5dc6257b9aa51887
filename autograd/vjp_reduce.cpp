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

Grads reduce_sum_vjp(In in, const Attrs& attrs, In, In g) {
  if (!is_floating(in[0].dtype())) return {Tensor()};
  return {broadcast_to(keep_dims(g[0], attrs), in[0].shape())};
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

// reduce_prod, exact at zeros (g * y / x would be 0/0 there). With p = the product of the
// nonzero elements of each reduced group and z = how many elements of the group are zero,
// d y / d x_i (the product of all the others) is:
//   z == 0: p / x_i;   z == 1: p at the zero element, 0 elsewhere;   z >= 2: 0.
Grads reduce_prod_vjp(In in, const Attrs& attrs, In, In g) {
  const Tensor& x = in[0];
  if (!is_floating(x.dtype())) return {Tensor()};
  const auto& axes = attrs.ints("axes");
  Tensor is_zero = x == 0.0;
  Tensor safe_x = where(is_zero, Scalar(1.0), x);
  Tensor p = prod(safe_x, axes, /*keepdims=*/true);
  Tensor z = sum(cast(is_zero, x.dtype()), axes, /*keepdims=*/true);
  Tensor one_zero = where(logical_and(z == 1.0, is_zero), p, Scalar(0.0));
  Tensor others = where(z == 0.0, p / safe_x, one_zero);
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
