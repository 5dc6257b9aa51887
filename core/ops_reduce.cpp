// Reduction primitives (reduce_sum/max/min/prod, argmax/argmin) with their inference rules,
// and the composites built on them with public ops only: mean, var, std, logsumexp,
// softmax, log_softmax and sparse softmax cross-entropy.

#include <cmath>
#include <limits>

#include <kiln/core/dispatch.h>
#include <kiln/core/ops.h>

namespace kiln {
namespace {

std::string tstr(const TensorType& t) {
  return fmt::format("{}{}", name(t.dtype), t.shape.str());
}

// Checks the "axes" attribute (sorted, unique, in range): a tracer or the IR parser may hand
// inference attributes that never went through normalize_axes.
const std::vector<int64_t>& checked_axes(const OpDef& op, const TensorType& x, const Attrs& a) {
  const auto& axes = a.ints("axes");
  for (size_t i = 0; i < axes.size(); ++i) {
    KILN_CHECK(axes[i] >= 0 && axes[i] < x.shape.rank(),
               "{}: axis {} is out of range for {} (rank {})", op.name(), axes[i], tstr(x),
               x.shape.rank());
    KILN_CHECK(i == 0 || axes[i] > axes[i - 1], "{}: axes [{}] must be sorted and unique for {}",
               op.name(), fmt::join(axes, ","), tstr(x));
  }
  return axes;
}

Shape reduced_shape(const Shape& s, const std::vector<int64_t>& axes, bool keepdims) {
  Shape out;
  size_t j = 0;
  for (int64_t i = 0; i < s.rank(); ++i) {
    if (j < axes.size() && axes[j] == i) {
      ++j;
      if (keepdims) out.push_back(1);
    } else {
      out.push_back(s[static_cast<size_t>(i)]);
    }
  }
  return out;
}

// NumPy: sums and products of bool and integers accumulate in i64; floats keep their dtype.
DType accumulate_dtype(DType t) {
  return is_floating(t) ? t : DType::i64;
}

template <bool kWidens, bool kNeedsElements>
std::vector<TensorType> infer_reduce(const OpDef& op, std::span<const TensorType> in,
                                     const Attrs& a) {
  const TensorType& x = in[0];
  const auto& axes = checked_axes(op, x, a);
  if constexpr (kNeedsElements) {
    for (int64_t ax : axes)
      KILN_CHECK(x.shape[static_cast<size_t>(ax)] != 0,
                 "{}: cannot reduce over the empty axis {} of {} (no identity)", op.name(), ax,
                 tstr(x));
  }
  DType dt = kWidens ? accumulate_dtype(x.dtype) : x.dtype;
  return {TensorType{dt, reduced_shape(x.shape, axes, a.b("keepdims"))}};
}

std::vector<TensorType> infer_arg(const OpDef& op, std::span<const TensorType> in, const Attrs& a) {
  const TensorType& x = in[0];
  const int64_t axis = a.i("axis");
  KILN_CHECK(axis >= 0 && axis < x.shape.rank(), "{}: axis {} is out of range for {} (rank {})",
             op.name(), axis, tstr(x), x.shape.rank());
  KILN_CHECK(x.shape[static_cast<size_t>(axis)] != 0,
             "{}: cannot take the {} over the empty axis {} of {}", op.name(), op.name(), axis,
             tstr(x));
  return {TensorType{DType::i64, reduced_shape(x.shape, {axis}, false)}};
}

KILN_STATIC_INIT {
  registry()
      .mutable_op("reduce_sum")
      .set_num_inputs(1)
      .set_flags(kReduction)
      .set_infer(infer_reduce<true, false>)
      .set_doc("Sum over `axes` (sorted); bool and integers accumulate into i64.");
  registry()
      .mutable_op("reduce_prod")
      .set_num_inputs(1)
      .set_flags(kReduction)
      .set_infer(infer_reduce<true, false>)
      .set_doc("Product over `axes` (sorted); bool and integers accumulate into i64.");
  registry()
      .mutable_op("reduce_max")
      .set_num_inputs(1)
      .set_flags(kReduction)
      .set_infer(infer_reduce<false, true>)
      .set_doc("Maximum over `axes` (sorted); NaN propagates; empty axes are an error.");
  registry()
      .mutable_op("reduce_min")
      .set_num_inputs(1)
      .set_flags(kReduction)
      .set_infer(infer_reduce<false, true>)
      .set_doc("Minimum over `axes` (sorted); NaN propagates; empty axes are an error.");
  registry()
      .mutable_op("argmax")
      .set_num_inputs(1)
      .set_flags(kReduction | kNotDifferentiable)
      .set_infer(infer_arg)
      .set_doc("i64 index of the first maximum along `axis` (the first NaN if any).");
  registry()
      .mutable_op("argmin")
      .set_num_inputs(1)
      .set_flags(kReduction | kNotDifferentiable)
      .set_infer(infer_arg)
      .set_doc("i64 index of the first minimum along `axis` (the first NaN if any).");
};

// normalize_axes with a message that also names the tensor's type.
std::vector<int64_t> public_axes(const std::vector<int64_t>& axes, const Tensor& x,
                                 const char* op) {
  for (int64_t a : axes)
    KILN_CHECK(a >= -x.rank() && a < x.rank(), "{}: axis {} is out of range for {} (rank {})", op,
               a, x.type_str(), x.rank());
  return normalize_axes(axes, x.rank(), op);
}

Tensor reduce(const char* op_name, const char* public_name, const Tensor& x,
              const std::vector<int64_t>& axes, bool keepdims) {
  const OpDef& op = registry().op(op_name);
  return dispatch1(op, {x},
                   Attrs{{"axes", public_axes(axes, x, public_name)}, {"keepdims", keepdims}});
}

Tensor arg_reduce(const char* op_name, const Tensor& x, int64_t axis) {
  const OpDef& op = registry().op(op_name);
  return dispatch1(op, {x}, Attrs{{"axis", public_axes({axis}, x, op_name)[0]}});
}

Tensor as_float(const Tensor& x) {
  return is_floating(x.dtype()) ? x : cast(x, f32);
}

// Removes the (sorted, normalized) `axes` that a keepdims=true reduction left as size 1.
Tensor drop_axes(Tensor t, const std::vector<int64_t>& axes) {
  for (size_t i = axes.size(); i-- > 0;)
    t = squeeze(t, axes[i]);
  return t;
}

// The number of elements each output of a reduction over `axes` combines, as a scalar tensor
// of dtype `dt` (computed with ops when a dim is unknown, as in a traced function).
Tensor reduce_count(const Tensor& x, const std::vector<int64_t>& axes, bool keepdims, DType dt,
                    double* known) {
  double n = 1;
  for (int64_t a : axes) {
    const int64_t d = x.shape()[static_cast<size_t>(a)];
    if (d < 0) {
      *known = -1;
      return sum(ones_like(cast(x, dt)), axes, keepdims);
    }
    n *= static_cast<double>(d);
  }
  *known = n;
  return Tensor();
}

// max(x, axes, keepdims=true) with infinities replaced by 0, and no gradient: subtracting it
// keeps exp() in range, and rows of -inf (or +inf) come out as -inf (or +inf), not NaN.
Tensor safe_max(const Tensor& x, const std::vector<int64_t>& axes) {
  Tensor m = stop_gradient(max(x, axes, true));
  return where(equal(abs(m), Scalar(std::numeric_limits<double>::infinity())), Scalar(0.0), m);
}

}  // namespace

Tensor sum(const Tensor& x, std::vector<int64_t> axes, bool keepdims) {
  return reduce("reduce_sum", "sum", x, axes, keepdims);
}
Tensor prod(const Tensor& x, std::vector<int64_t> axes, bool keepdims) {
  return reduce("reduce_prod", "prod", x, axes, keepdims);
}
Tensor max(const Tensor& x, std::vector<int64_t> axes, bool keepdims) {
  return reduce("reduce_max", "max", x, axes, keepdims);
}
Tensor min(const Tensor& x, std::vector<int64_t> axes, bool keepdims) {
  return reduce("reduce_min", "min", x, axes, keepdims);
}
Tensor argmax(const Tensor& x, int64_t axis) {
  return arg_reduce("argmax", x, axis);
}
Tensor argmin(const Tensor& x, int64_t axis) {
  return arg_reduce("argmin", x, axis);
}

Tensor mean(const Tensor& x, std::vector<int64_t> axes, bool keepdims) {
  const auto norm = public_axes(axes, x, "mean");
  Tensor xf = as_float(x);
  Tensor s = sum(xf, norm, keepdims);
  double n = 0;
  Tensor count = reduce_count(xf, norm, keepdims, xf.dtype(), &n);
  if (n < 0) return div(s, count);
  return div(s, Scalar(n));
}

Tensor var(const Tensor& x, std::vector<int64_t> axes, bool keepdims) {
  const auto norm = public_axes(axes, x, "var");
  Tensor xf = as_float(x);
  Tensor d = sub(xf, mean(xf, norm, true));
  return mean(mul(d, d), norm, keepdims);
}

Tensor std(const Tensor& x, std::vector<int64_t> axes, bool keepdims) {
  return sqrt(var(x, std::move(axes), keepdims));
}

Tensor logsumexp(const Tensor& x, std::vector<int64_t> axes, bool keepdims) {
  const auto norm = public_axes(axes, x, "logsumexp");
  Tensor xf = as_float(x);
  Tensor m = safe_max(xf, norm);
  Tensor out = add(log(sum(exp(sub(xf, m)), norm, true)), m);
  return keepdims ? out : drop_axes(out, norm);
}

Tensor softmax(const Tensor& x, int64_t axis) {
  const std::vector<int64_t> ax{public_axes({axis}, x, "softmax")[0]};
  Tensor xf = as_float(x);
  Tensor e = exp(sub(xf, safe_max(xf, ax)));
  return div(e, sum(e, ax, true));
}

Tensor log_softmax(const Tensor& x, int64_t axis) {
  const std::vector<int64_t> ax{public_axes({axis}, x, "log_softmax")[0]};
  Tensor xf = as_float(x);
  Tensor shifted = sub(xf, safe_max(xf, ax));
  return sub(shifted, log(sum(exp(shifted), ax, true)));
}

Tensor sparse_softmax_cross_entropy_with_logits(const Tensor& labels, const Tensor& logits) {
  constexpr const char* op = "sparse_softmax_cross_entropy_with_logits";
  KILN_CHECK(is_floating(logits.dtype()) && logits.rank() >= 1,
             "{}: logits must be a floating-point tensor of rank >= 1, got {} (labels {})", op,
             logits.type_str(), labels.type_str());
  KILN_CHECK(is_integral(labels.dtype()),
             "{}: labels must be an integer tensor (i32 or i64), got {} (logits {})", op,
             labels.type_str(), logits.type_str());
  const Shape& ls = logits.shape();
  bool ok = labels.rank() == ls.rank() - 1;
  for (int64_t i = 0; ok && i < labels.rank(); ++i) {
    const int64_t a = labels.shape()[static_cast<size_t>(i)];
    const int64_t b = ls[static_cast<size_t>(i)];
    ok = a == b || a < 0 || b < 0;
  }
  KILN_CHECK(ok, "{}: labels {} must have the shape of logits {} without its last dim", op,
             labels.type_str(), logits.type_str());
  const int64_t depth = ls.back();
  KILN_CHECK(depth >= 0 || labels.is_symbolic(), "{}: the class dim of logits {} must be known", op,
             logits.type_str());
  if (!labels.is_symbolic()) {
    for (int64_t v : labels.to_vector<int64_t>())
      KILN_CHECK(v >= 0 && v < depth, "{}: label {} is out of range [0, {}) for logits {}", op, v,
                 depth, logits.type_str());
  }
  // Select the label's logit with a mask and where(), not a multiply by one_hot: a -inf
  // logit times 0 would be NaN.
  Tensor mask = one_hot(labels, depth, DType::boolean);
  Tensor picked = sum(where(mask, logits, Scalar(0.0)), {-1});
  return sub(logsumexp(logits, {-1}), picked);
}

}  // namespace kiln
