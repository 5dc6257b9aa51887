// VJP rules of the movement primitives (core/ops_shape.cpp): reshape, reshape_like, transpose,
// broadcast_to, slice, pad, concatenate, gather and scatter_add. All are written with public
// ops (so higher order gradients and traced backward passes work), and all but
// gather/scatter_add read nothing but shapes and attributes.

// registry.h first: grad_util.h uses VjpFn without including it.
#include <kiln/core/registry.h>

#include <algorithm>

#include <kiln/autograd/grad_util.h>

namespace kiln::autograd {
namespace {

using Grads = std::vector<Tensor>;
using In = std::span<const Tensor>;

// With several unknown dims in the input its shape is read at run time (in[0] is then the
// symbolic input itself, not a placeholder); one unknown dim is the reshape's "whatever is left".
Grads reshape_vjp(In in, const Attrs&, In, In g) {
  const auto& dims = in[0].shape().dims();
  if (std::count(dims.begin(), dims.end(), int64_t{-1}) > 1) return {reshape_like(g[0], in[0])};
  return {reshape(g[0], in[0].shape())};
}

// reshape_like(x, like): like is read for its shape only.
Grads reshape_like_vjp(In in, const Attrs&, In, In g) {
  return {reshape_like(g[0], in[0]), Tensor()};
}

Grads transpose_vjp(In, const Attrs& attrs, In, In g) {
  const auto& perm = attrs.ints("perm");
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i)
    inverse[static_cast<size_t>(perm[i])] = static_cast<int64_t>(i);
  return {transpose(g[0], std::move(inverse))};
}

Grads broadcast_to_vjp(In in, const Attrs&, In, In g) {
  return {unbroadcast(g[0], in[0].shape())};
}

// slice(axis, start, stop, step): the gradient is g scattered back to positions start,
// start+step, ... of the axis and zero elsewhere. With step > 1 the zeros are interleaved with
// movement ops only: [.., m, ..] -> expand_dims -> [.., m, 1, ..] -> pad (0, step-1) ->
// [.., m, step, ..] -> reshape [.., m*step, ..], then trimmed or padded to the input's size.
Grads slice_vjp(In in, const Attrs& attrs, In, In g) {
  const int64_t axis = attrs.i("axis"), start = attrs.i("start"), step = attrs.i("step");
  const Shape& xs = in[0].shape();
  const int64_t n = xs[static_cast<size_t>(axis)];
  const int64_t rank = xs.rank();
  Tensor spread = g[0];
  const int64_t m = g[0].dim(axis);
  int64_t covered = m;  // positions [start, start + covered) along axis are accounted for
  if (step > 1 && m > 0) {
    Tensor e = expand_dims(spread, axis + 1);
    std::vector<std::pair<int64_t, int64_t>> pads(static_cast<size_t>(rank + 1), {0, 0});
    pads[static_cast<size_t>(axis + 1)] = {0, step - 1};
    e = pad(e, pads);
    std::vector<int64_t> dims = g[0].shape().dims();
    dims[static_cast<size_t>(axis)] = m * step;
    spread = reshape(e, Shape(std::move(dims)));
    covered = m * step;
    if (start + covered > n) {  // the trailing zeros of the last group overshoot the axis
      spread = slice(spread, axis, 0, n - start);
      covered = n - start;
    }
  }
  std::vector<std::pair<int64_t, int64_t>> pads(static_cast<size_t>(rank), {0, 0});
  pads[static_cast<size_t>(axis)] = {start, n - start - covered};
  return {pad(spread, pads)};
}

// pad(pads, value): the gradient of the input is the window of g that holds it; the padding
// value is a constant attribute and gets nothing.
Grads pad_vjp(In in, const Attrs& attrs, In, In g) {
  const auto& pads = attrs.ints("pads");
  Tensor out = g[0];
  for (int64_t d = 0; d < in[0].rank(); ++d) {
    const int64_t before = pads[static_cast<size_t>(2 * d)];
    if (before == 0 && pads[static_cast<size_t>(2 * d + 1)] == 0) continue;  // may be unknown
    out = slice(out, d, before, before + in[0].dim(d));
  }
  return {out};
}

// concatenate(axis): each input gets its own window of g along the axis.
Grads concatenate_vjp(In in, const Attrs& attrs, In, In g) {
  const int64_t axis = attrs.i("axis");
  Grads out;
  out.reserve(in.size());
  int64_t offset = 0;
  for (const Tensor& x : in) {
    const int64_t size = x.dim(axis);
    out.push_back(slice(g[0], axis, offset, offset + size));
    offset += size;
  }
  return out;
}

// gather(x, indices, axis): repeated indices accumulate (scatter_add adds duplicates).
Grads gather_vjp(In in, const Attrs& attrs, In, In g) {
  const int64_t axis = attrs.i("axis");
  return {scatter_add(zeros_like(in[0]), in[1], g[0], axis), Tensor()};
}

// scatter_add(x, indices, updates): x passes g through; each update reads g where it landed.
Grads scatter_add_vjp(In in, const Attrs& attrs, In, In g) {
  const int64_t axis = attrs.i("axis");
  return {g[0], Tensor(), gather(g[0], in[1], axis)};
}

KILN_STATIC_INIT {
  register_vjp("reshape", reshape_vjp, kVjpNeedsNothing);
  register_vjp("reshape_like", reshape_like_vjp, kVjpNeedsNothing);
  register_vjp("transpose", transpose_vjp, kVjpNeedsNothing);
  register_vjp("broadcast_to", broadcast_to_vjp, kVjpNeedsNothing);
  register_vjp("slice", slice_vjp, kVjpNeedsNothing);
  register_vjp("pad", pad_vjp, kVjpNeedsNothing);
  register_vjp("concatenate", concatenate_vjp, kVjpNeedsNothing);
  // Both read only the indices, but VjpNeeds cannot name a single input: x is kept as well.
  register_vjp("gather", gather_vjp, kVjpNeedsInputs);
  register_vjp("scatter_add", scatter_add_vjp, kVjpNeedsInputs);
};

}  // namespace
}  // namespace kiln::autograd
