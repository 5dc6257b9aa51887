// Movement primitives (reshape, reshape_like, transpose, broadcast_to, slice, pad, concatenate,
// gather, scatter_add) with their inference, and the composites built on them (squeeze,
// expand_dims, stack, split, one_hot).
//
// Unknown dims. A traced function's TensorSpecs may have dims of -1 ("unknown", printed "?"),
// so every inference rule may see them. The rules, for all primitives (see ARCHITECTURE.md):
//  - An unknown input dim propagates to the outputs it flows into; checks that two dims are
//    equal (matmul inner dims, concat, conv channels, select, scatter_add, ...) pass when
//    either side is -1; the interpreter re-runs inference on concrete tensors at call time,
//    where the real check happens.
//  - Nothing multiplies dims that may be -1 (Shape::numel is meaningless there).
//  - reshape: the "shape" attr may hold one -1, "whatever is left". infer_reshape resolves it
//    from the input's numel when the input is fully known and leaves it -1 otherwise; the
//    public reshape() never computes the numel of an input with unknown dims. Dims copied from
//    the input at run time are listed in the optional "copy_dims" attr (expand_dims/squeeze
//    of a tensor with several unknown dims); reshape_like(x, like) takes like's shape at run
//    time (the gradient of a reshape whose input has several unknown dims).
//  - broadcast_to: a -1 in the target means "keep the input's dim" (torch.expand); it is an
//    error where the input has no such dim (a new leading dim).
//  - slice/split need the sliced dim to be known ("slice: dim 0 of f32[?,3] is unknown").
//  - Creation ops (full, iota, rng_*) reject unknown dims; zeros_like/ones_like/full_like of a
//    tensor with unknown dims use the "fill_like" primitive, which reads the shape at run time,
//    and random::*_like (dropout) the rng_*_like primitives.
//  - A -1 dim is assumed not to be a broadcast 1 at run time where the other side is known
//    and > 1 (the traced gradient would not sum over it).

#include <algorithm>
#include <numeric>

#include <kiln/core/dispatch.h>
#include <kiln/core/ops.h>

namespace kiln {
namespace {

std::string type_str(const TensorType& t) {
  return fmt::format("{}{}", name(t.dtype), t.shape.str());
}

bool fully_known(const Shape& s) {
  return std::none_of(s.begin(), s.end(), [](int64_t d) { return d < 0; });
}

// The "shape" attr may hold one -1 ("whatever is left"): resolved from the input's numel when
// the input is fully known, left unknown otherwise. The optional "copy_dims" attr (one entry per
// output dim) marks dims copied from the input at run time: copy_dims[i] = j >= 0 makes output
// dim i input dim j (shape[i] holds -1 there); -1 entries take shape[i].
std::vector<TensorType> infer_reshape(const OpDef&, std::span<const TensorType> in,
                                      const Attrs& a) {
  Shape s(a.ints("shape"));
  const Shape& x = in[0].shape;
  std::vector<int64_t> copy(s.size(), -1);
  if (a.has("copy_dims")) {
    copy = a.ints("copy_dims");
    KILN_CHECK(copy.size() == s.size(), "reshape: copy_dims [{}] needs one entry per dim of {}",
               fmt::join(copy, ","), s.str());
  }
  int64_t infer_at = -1;
  for (int64_t i = 0; i < s.rank(); ++i) {
    const int64_t c = copy[static_cast<size_t>(i)];
    KILN_CHECK(c >= -1, "reshape: copy_dims [{}] has a negative entry", fmt::join(copy, ","));
    if (c >= 0) {
      KILN_CHECK(c < x.rank() && s[i] == -1,
                 "reshape: copy_dims [{}] cannot copy dim {} of {} into dim {} of {}",
                 fmt::join(copy, ","), c, type_str(in[0]), i, s.str());
      s[i] = x[c];
    } else if (s[i] == -1) {
      KILN_CHECK(infer_at < 0, "reshape: more than one -1 in {} (reshaping {})", s.str(),
                 type_str(in[0]));
      infer_at = i;
    } else {
      KILN_CHECK(s[i] >= 0, "reshape: negative dim {} in [{}] (reshaping {})", s[i],
                 fmt::join(s.dims(), ","), type_str(in[0]));
    }
  }
  if (!fully_known(x)) return {{in[0].dtype, s}};  // checked at run time
  const int64_t n = x.numel();
  if (infer_at >= 0) {
    int64_t known = 1;
    for (int64_t i = 0; i < s.rank(); ++i)
      if (i != infer_at) known *= s[i];
    KILN_CHECK(known > 0 && n % known == 0, "reshape: cannot reshape {} ({} elements) into {}",
               type_str(in[0]), n, s.str());
    s[infer_at] = n / known;
  }
  KILN_CHECK(s.numel() == n, "reshape: cannot reshape {} ({} elements) into {} ({} elements)",
             type_str(in[0]), n, s.str(), s.numel());
  return {{in[0].dtype, s}};
}

// reshape_like(x, like): x's elements in like's shape (like is read for its shape only).
std::vector<TensorType> infer_reshape_like(const OpDef&, std::span<const TensorType> in,
                                           const Attrs&) {
  if (fully_known(in[0].shape) && fully_known(in[1].shape))
    KILN_CHECK(in[0].shape.numel() == in[1].shape.numel(),
               "reshape_like: cannot reshape {} ({} elements) like {} ({} elements)",
               type_str(in[0]), in[0].shape.numel(), type_str(in[1]), in[1].shape.numel());
  return {{in[0].dtype, in[1].shape}};
}

// reshape_like runs the device's reshape kernel with the concrete shape inference gave it.
std::vector<Tensor> reshape_like_kernel(std::span<const Tensor> in, const Attrs&,
                                        std::span<const TensorType> out) {
  static const OpDef& reshape = registry().op("reshape");
  KernelFn k = reshape.kernel(in[0].device().type);
  KILN_CHECK(k != nullptr, "reshape_like: no 'reshape' kernel for device {}", in[0].device().str());
  return k(in.first(1), Attrs{{"shape", out[0].shape.dims()}}, out);
}

std::vector<TensorType> infer_transpose(const OpDef&, std::span<const TensorType> in,
                                        const Attrs& a) {
  const auto& perm = a.ints("perm");
  const int64_t r = in[0].shape.rank();
  KILN_CHECK(static_cast<int64_t>(perm.size()) == r,
             "transpose: permutation [{}] has {} entries for {} of rank {}", fmt::join(perm, ","),
             perm.size(), type_str(in[0]), r);
  std::vector<bool> seen(r, false);
  Shape out;
  for (int64_t p : perm) {
    KILN_CHECK(p >= 0 && p < r && !seen[p], "transpose: [{}] is not a permutation of {} axes ({})",
               fmt::join(perm, ","), r, type_str(in[0]));
    seen[p] = true;
    out.push_back(in[0].shape[p]);
  }
  return {{in[0].dtype, out}};
}

std::vector<TensorType> infer_broadcast(const OpDef&, std::span<const TensorType> in,
                                        const Attrs& a) {
  // A -1 in the target keeps the input's dim (torch.expand); an unknown input dim matches any
  // target dim (the run-time inference checks it).
  Shape target(a.ints("shape"));
  const Shape& s = in[0].shape;
  bool ok = s.size() <= target.size();
  const size_t lead = ok ? target.size() - s.size() : 0;
  for (size_t i = 0; ok && i < target.size(); ++i) {
    KILN_CHECK(target[i] >= -1, "broadcast_to: negative dim in target [{}] (for {})",
               fmt::join(target.dims(), ","), type_str(in[0]));
    if (i < lead) {
      KILN_CHECK(target[i] >= 0,
                 "broadcast_to: target [{}] keeps (-1) dim {}, which {} does not have",
                 fmt::join(target.dims(), ","), i, type_str(in[0]));
      continue;
    }
    const int64_t d = s[i - lead];
    if (target[i] == -1) target[i] = d;
    ok = d == target[i] || d == 1 || d < 0 || target[i] < 0;
  }
  KILN_CHECK(ok, "broadcast_to: cannot broadcast {} to shape {}", type_str(in[0]), target.str());
  return {{in[0].dtype, target}};
}

std::vector<TensorType> infer_slice(const OpDef&, std::span<const TensorType> in, const Attrs& a) {
  const int64_t axis = a.i("axis"), start = a.i("start"), stop = a.i("stop"), step = a.i("step");
  Shape s = in[0].shape;
  KILN_CHECK(axis >= 0 && axis < s.rank(), "slice: axis {} is out of range for {}", axis,
             type_str(in[0]));
  KILN_CHECK(step > 0, "slice: step must be positive, got {} (for {})", step, type_str(in[0]));
  KILN_CHECK(s[axis] >= 0, "slice: dim {} of {} is unknown", axis, type_str(in[0]));
  KILN_CHECK(0 <= start && start <= stop && stop <= s[axis],
             "slice: [{}:{}] is out of range for dim {} of size {} in {}", start, stop, axis,
             s[axis], type_str(in[0]));
  s[axis] = (stop - start + step - 1) / step;
  return {{in[0].dtype, s}};
}

std::vector<TensorType> infer_pad(const OpDef&, std::span<const TensorType> in, const Attrs& a) {
  const auto& pads = a.ints("pads");
  Shape s = in[0].shape;
  KILN_CHECK(static_cast<int64_t>(pads.size()) == 2 * s.rank(),
             "pad: needs one (before, after) pair per dim: {} pairs for {}", pads.size() / 2,
             type_str(in[0]));
  for (int64_t d = 0; d < s.rank(); ++d) {
    KILN_CHECK(pads[2 * d] >= 0 && pads[2 * d + 1] >= 0,
               "pad: negative padding ({}, {}) on dim {} of {}", pads[2 * d], pads[2 * d + 1], d,
               type_str(in[0]));
    if (s[d] >= 0) s[d] += pads[2 * d] + pads[2 * d + 1];
  }
  return {{in[0].dtype, s}};
}

std::vector<TensorType> infer_concat(const OpDef&, std::span<const TensorType> in, const Attrs& a) {
  KILN_CHECK(!in.empty(), "concat: needs at least one tensor");
  const int64_t axis = a.i("axis");
  Shape s = in[0].shape;
  KILN_CHECK(axis >= 0 && axis < s.rank(), "concat: axis {} is out of range for {}", axis,
             type_str(in[0]));
  for (size_t i = 1; i < in.size(); ++i) {
    bool ok = in[i].shape.rank() == s.rank() && in[i].dtype == in[0].dtype;
    for (int64_t d = 0; ok && d < s.rank(); ++d) {
      const int64_t di = in[i].shape[d];
      ok = d == axis || di == s[d] || di < 0 || s[d] < 0;
      if (ok && d != axis && s[d] < 0) s[d] = di;  // a known dim wins over an unknown one
    }
    KILN_CHECK(ok, "concat: tensor {} is {}, which does not match {} outside axis {}", i,
               type_str(in[i]), type_str(in[0]), axis);
    s[axis] = s[axis] < 0 || in[i].shape[axis] < 0 ? -1 : s[axis] + in[i].shape[axis];
  }
  return {{in[0].dtype, s}};
}

std::vector<TensorType> infer_gather(const OpDef&, std::span<const TensorType> in, const Attrs& a) {
  const int64_t axis = a.i("axis");
  const Shape& x = in[0].shape;
  KILN_CHECK(axis >= 0 && axis < x.rank(), "gather: axis {} is out of range for {}", axis,
             type_str(in[0]));
  KILN_CHECK(in[1].dtype == DType::i32 || in[1].dtype == DType::i64,
             "gather: indices must be i32 or i64, got {}", type_str(in[1]));
  Shape s;
  for (int64_t d = 0; d < axis; ++d)
    s.push_back(x[d]);
  for (int64_t d : in[1].shape)
    s.push_back(d);
  for (int64_t d = axis + 1; d < x.rank(); ++d)
    s.push_back(x[d]);
  return {{in[0].dtype, s}};
}

std::vector<TensorType> infer_scatter_add(const OpDef& op, std::span<const TensorType> in,
                                          const Attrs& a) {
  auto expected = infer_gather(op, in.first(2), a)[0];
  bool same = in[2].shape.rank() == expected.shape.rank();
  for (int64_t d = 0; same && d < expected.shape.rank(); ++d)
    same = in[2].shape[d] == expected.shape[d] || in[2].shape[d] < 0 || expected.shape[d] < 0;
  KILN_CHECK(in[2].dtype == in[0].dtype && same,
             "scatter_add: updates must be {}, got {} (x {}, indices {})", type_str(expected),
             type_str(in[2]), type_str(in[0]), type_str(in[1]));
  return {in[0]};
}

KILN_STATIC_INIT {
  auto& r = registry();
  r.mutable_op("reshape").set_num_inputs(1).set_infer(infer_reshape).set_flags(kMovement | kView);
  auto& like = r.mutable_op("reshape_like")
                   .set_num_inputs(2)
                   .set_infer(infer_reshape_like)
                   .set_flags(kMovement | kView)
                   .set_doc("Input 0's elements in the shape of input 1 (read at run time).");
  for (int d = 0; d < kNumDeviceTypes; ++d)
    like.set_kernel(static_cast<DeviceType>(d), reshape_like_kernel);
  r.mutable_op("transpose")
      .set_num_inputs(1)
      .set_infer(infer_transpose)
      .set_flags(kMovement | kView);
  r.mutable_op("broadcast_to")
      .set_num_inputs(1)
      .set_infer(infer_broadcast)
      .set_flags(kMovement | kView);
  r.mutable_op("slice").set_num_inputs(1).set_infer(infer_slice).set_flags(kMovement | kView);
  r.mutable_op("pad").set_num_inputs(1).set_infer(infer_pad).set_flags(kMovement);
  r.mutable_op("concatenate").set_num_inputs(-1).set_infer(infer_concat).set_flags(kMovement);
  r.mutable_op("gather").set_num_inputs(2).set_infer(infer_gather).set_flags(kMovement);
  r.mutable_op("scatter_add").set_num_inputs(3).set_infer(infer_scatter_add).set_flags(kMovement);
};

#define KILN_OP(var, opname) static const OpDef& var = registry().op(opname)

}  // namespace

Tensor reshape(const Tensor& x, const Shape& shape) {
  KILN_OP(op, "reshape");
  if (shape == x.shape()) return x;  // also when both have the same unknown dims
  std::vector<int64_t> dims = shape.dims();
  int64_t known = 1, infer_at = -1;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] == -1) {
      KILN_CHECK(infer_at < 0, "reshape: more than one -1 in {} (reshaping {})", shape.str(),
                 x.type_str());
      infer_at = static_cast<int64_t>(i);
    } else {
      KILN_CHECK(dims[i] >= 0, "reshape: negative dim in {} (reshaping {})", shape.str(),
                 x.type_str());
      known *= dims[i];
    }
  }
  // With unknown input dims the -1 stays: infer_reshape resolves it on concrete inputs.
  if (infer_at >= 0 && fully_known(x.shape())) {
    KILN_CHECK(known > 0 && x.numel() % known == 0,
               "reshape: cannot reshape {} ({} elements) into {}", x.type_str(), x.numel(),
               shape.str());
    dims[infer_at] = x.numel() / known;
  }
  if (Shape(dims) == x.shape()) return x;
  return dispatch1(op, {x}, Attrs{{"shape", std::move(dims)}});
}

Tensor transpose(const Tensor& x, std::vector<int64_t> perm) {
  KILN_OP(op, "transpose");
  for (auto& p : perm)
    if (p < 0) p += x.rank();
  bool identity = true;
  for (size_t i = 0; i < perm.size(); ++i)
    identity &= perm[i] == static_cast<int64_t>(i);
  if (identity && static_cast<int64_t>(perm.size()) == x.rank()) return x;
  return dispatch1(op, {x}, Attrs{{"perm", std::move(perm)}});
}

Tensor broadcast_to(const Tensor& x, const Shape& shape) {
  KILN_OP(op, "broadcast_to");
  if (x.shape() == shape) return x;
  return dispatch1(op, {x}, Attrs{{"shape", shape.dims()}});
}

Tensor reshape_like(const Tensor& x, const Tensor& like) {
  KILN_OP(op, "reshape_like");
  if (fully_known(like.shape())) return reshape(x, like.shape());
  return dispatch1(op, {x, like}, {});
}

namespace {

// x reshaped to `dims`, which are x's dims with dims of 1 inserted or removed: `from[i]` is the
// dim of x that output dim i is (-1 for an inserted 1). With several unknown dims the reshape
// copies them from x at run time ("copy_dims"); with one, its plain -1 is "whatever is left",
// which is the same dim (and keeps the IR of such graphs as it was).
Tensor reshape_keeping(const Tensor& x, std::vector<int64_t> dims,
                       const std::vector<int64_t>& from) {
  const int64_t unknown = std::count(dims.begin(), dims.end(), int64_t{-1});
  if (unknown <= 1) return reshape(x, Shape(std::move(dims)));
  KILN_OP(op, "reshape");
  std::vector<int64_t> copy(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i)
    if (dims[i] == -1) copy[i] = from[i];
  return dispatch1(op, {x}, Attrs{{"shape", std::move(dims)}, {"copy_dims", std::move(copy)}});
}

std::vector<int64_t> iota_dims(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

}  // namespace

Tensor squeeze(const Tensor& x, int64_t axis) {
  axis = normalize_axis(axis, x.rank(), "squeeze");
  KILN_CHECK(x.dim(axis) >= 0, "squeeze: dim {} of {} is unknown", axis, x.type_str());
  KILN_CHECK(x.dim(axis) == 1, "squeeze: dim {} of {} has size {}, not 1", axis, x.type_str(),
             x.dim(axis));
  std::vector<int64_t> dims = x.shape().dims();
  std::vector<int64_t> from = iota_dims(x.rank());
  dims.erase(dims.begin() + axis);
  from.erase(from.begin() + axis);
  return reshape_keeping(x, std::move(dims), from);
}

Tensor expand_dims(const Tensor& x, int64_t axis) {
  axis = normalize_axis(axis, x.rank() + 1, "expand_dims");
  std::vector<int64_t> dims = x.shape().dims();
  std::vector<int64_t> from = iota_dims(x.rank());
  dims.insert(dims.begin() + axis, 1);
  from.insert(from.begin() + axis, -1);
  return reshape_keeping(x, std::move(dims), from);
}

Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t stop, int64_t step) {
  KILN_OP(op, "slice");
  axis = normalize_axis(axis, x.rank(), "slice");
  const int64_t n = x.dim(axis);
  KILN_CHECK(n >= 0, "slice: dim {} of {} is unknown", axis, x.type_str());
  KILN_CHECK(start >= -n && start <= n && stop >= -n && stop <= n,
             "slice: [{}:{}] is out of range for dim {} of size {} in {}", start, stop, axis, n,
             x.type_str());
  if (start < 0) start += n;
  if (stop < 0) stop += n;
  if (start == 0 && stop == n && step == 1) return x;
  return dispatch1(op, {x},
                   Attrs{{"axis", axis}, {"start", start}, {"stop", stop}, {"step", step}});
}

Tensor concat(const std::vector<Tensor>& tensors, int64_t axis) {
  KILN_OP(op, "concatenate");
  KILN_CHECK(!tensors.empty(), "concat: needs at least one tensor");
  if (tensors.size() == 1) return tensors[0];
  DType t = tensors[0].dtype();
  for (const auto& x : tensors)
    t = promote(t, x.dtype());
  std::vector<Tensor> in;
  for (const auto& x : tensors)
    in.push_back(cast(x, t));
  axis = normalize_axis(axis, tensors[0].rank(), "concat");
  return dispatch1(op, in, Attrs{{"axis", axis}});
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t axis) {
  KILN_CHECK(!tensors.empty(), "stack: needs at least one tensor");
  for (const auto& x : tensors)
    KILN_CHECK(x.shape() == tensors[0].shape(), "stack: shapes differ: {} vs {}",
               tensors[0].type_str(), x.type_str());
  axis = normalize_axis(axis, tensors[0].rank() + 1, "stack");
  std::vector<Tensor> parts;
  for (const auto& x : tensors)
    parts.push_back(expand_dims(x, axis));
  return concat(parts, axis);
}

std::vector<Tensor> split(const Tensor& x, int64_t n, int64_t axis) {
  axis = normalize_axis(axis, x.rank(), "split");
  KILN_CHECK(x.dim(axis) >= 0, "split: dim {} of {} is unknown", axis, x.type_str());
  KILN_CHECK(n > 0 && x.dim(axis) % n == 0, "split: dim {} of {} (size {}) does not split into {}",
             axis, x.type_str(), x.dim(axis), n);
  const int64_t size = x.dim(axis) / n;
  std::vector<Tensor> out;
  for (int64_t i = 0; i < n; ++i)
    out.push_back(slice(x, axis, i * size, (i + 1) * size));
  return out;
}

Tensor pad(const Tensor& x, std::vector<std::pair<int64_t, int64_t>> pads, Scalar value) {
  KILN_OP(op, "pad");
  std::vector<int64_t> flat;
  for (auto [b, a] : pads) {
    flat.push_back(b);
    flat.push_back(a);
  }
  return dispatch1(op, {x}, Attrs{{"pads", std::move(flat)}, {"value", value.to_double()}});
}

Tensor gather(const Tensor& x, const Tensor& indices, int64_t axis) {
  KILN_OP(op, "gather");
  axis = normalize_axis(axis, x.rank(), "gather");
  return dispatch1(op, {x, indices}, Attrs{{"axis", axis}});
}

Tensor scatter_add(const Tensor& x, const Tensor& indices, const Tensor& updates, int64_t axis) {
  KILN_OP(op, "scatter_add");
  axis = normalize_axis(axis, x.rank(), "scatter_add");
  return dispatch1(op, {x, indices, cast(updates, x.dtype())}, Attrs{{"axis", axis}});
}

Tensor one_hot(const Tensor& indices, int64_t depth, DType dtype) {
  KILN_CHECK(!is_floating(indices.dtype()), "one_hot: indices must be integers, got {}",
             indices.type_str());
  KILN_CHECK(depth >= 0, "one_hot: negative depth {}", depth);
  // [depth] positions broadcast against [..., 1] indices: works with unknown index dims.
  Tensor positions = iota(Shape{depth}, 0, indices.dtype());
  if (!indices.is_symbolic() && !indices.device().is_cpu())
    positions = positions.to(indices.device());
  return cast(equal(expand_dims(indices, -1), positions), dtype);
}

}  // namespace kiln
