// Creation ops: the "full", "iota" and "fill_like" primitives and the public creation functions
// built on them (zeros, ones, arange, linspace, eye, ...), plus the dropout composite.
//
// Creation ops take their shape as an attribute, so it must be fully known: a -1 (unknown)
// dim raises at trace time. zeros_like/ones_like/full_like of a tensor with unknown dims use
// "fill_like" instead, whose output takes its input's concrete shape at run time.

#include <algorithm>
#include <cmath>

#include <kiln/core/dispatch.h>
#include <kiln/core/ops.h>
#include <kiln/core/random.h>
#include <kiln/core/registry.h>

namespace kiln {
namespace {

void check_dims(const char* op, const std::vector<int64_t>& dims) {
  for (int64_t d : dims) {
    KILN_CHECK(d != -1,
               "{}: shape {} has an unknown dim ([{}]); use zeros_like/ones_like/full_like of a "
               "tensor of that shape instead",
               op, Shape(dims).str(), fmt::join(dims, ","));
    KILN_CHECK(d >= 0, "{}: negative dim in shape [{}]", op, fmt::join(dims, ","));
  }
}

std::vector<TensorType> infer_full(const OpDef&, std::span<const TensorType>, const Attrs& a) {
  const auto& dims = a.ints("shape");
  check_dims("full", dims);
  return {TensorType{a.dtype("dtype"), Shape(dims)}};
}

std::vector<TensorType> infer_iota(const OpDef&, std::span<const TensorType>, const Attrs& a) {
  const auto& dims = a.ints("shape");
  check_dims("iota", dims);
  const int64_t axis = a.i("axis");
  const int64_t rank = static_cast<int64_t>(dims.size());
  KILN_CHECK(axis >= 0 && axis < rank, "iota: axis {} is out of range for shape {}", axis,
             Shape(dims).str());
  return {TensorType{a.dtype("dtype"), Shape(dims)}};
}

std::vector<TensorType> infer_fill_like(const OpDef&, std::span<const TensorType> in,
                                        const Attrs& a) {
  return {TensorType{a.dtype("dtype"), in[0].shape}};
}

// fill_like on the CPU runs the "full" kernel with the concrete shape inference gave it.
std::vector<Tensor> fill_like_kernel(std::span<const Tensor> in, const Attrs& a,
                                     std::span<const TensorType> out) {
  static const OpDef& full = registry().op("full");
  KernelFn k = full.kernel(DeviceType::cpu);
  const Attrs fa{{"shape", out[0].shape.dims()}, {"value", a.f("value")}, {"dtype", out[0].dtype}};
  return k({}, fa, out);
}

KILN_STATIC_INIT {
  auto& fill = registry()
                   .mutable_op("fill_like")
                   .set_num_inputs(1)
                   .set_flags(kNotDifferentiable)
                   .set_infer(infer_fill_like)
                   .set_doc(
                       "A tensor shaped like the input (read at run time), of dtype `dtype`, "
                       "with every element equal to `value`.");
  // Other devices register their own (it must allocate on the input's device).
  fill.set_kernel(DeviceType::cpu, fill_like_kernel);
  registry()
      .mutable_op("full")
      .set_num_inputs(0)
      .set_flags(kCreation | kNotDifferentiable)
      .set_infer(infer_full)
      .set_doc("A tensor of the given shape and dtype with every element equal to `value`.");
  registry()
      .mutable_op("iota")
      .set_num_inputs(0)
      .set_flags(kCreation | kNotDifferentiable)
      .set_infer(infer_iota)
      .set_doc("Each element is its index along `axis` (0, 1, 2, ...).");
};

}  // namespace

Tensor full(const Shape& shape, Scalar value, DType dtype) {
  static const OpDef& op = registry().op("full");
  return dispatch1(op, {},
                   Attrs{{"shape", shape.dims()}, {"value", value.to_double()}, {"dtype", dtype}});
}
Tensor zeros(const Shape& shape, DType dtype) {
  return full(shape, 0, dtype);
}
Tensor ones(const Shape& shape, DType dtype) {
  return full(shape, 1, dtype);
}
Tensor full_like(const Tensor& x, Scalar value) {
  const auto& d = x.shape().dims();
  // On a device, the fill runs there (a primitive with an input dispatches by its device).
  const bool on_device = x.defined() && !x.is_symbolic() && !x.device().is_cpu();
  if (!on_device && std::all_of(d.begin(), d.end(), [](int64_t n) { return n >= 0; }))
    return full(x.shape(), value, x.dtype());
  static const OpDef& op = registry().op("fill_like");
  return dispatch1(op, {x}, Attrs{{"value", value.to_double()}, {"dtype", x.dtype()}});
}
Tensor zeros_like(const Tensor& x) {
  return full_like(x, 0);
}
Tensor ones_like(const Tensor& x) {
  return full_like(x, 1);
}

Tensor iota(const Shape& shape, int64_t axis, DType dtype) {
  static const OpDef& op = registry().op("iota");
  if (axis < 0) axis += shape.rank();
  return dispatch1(op, {}, Attrs{{"shape", shape.dims()}, {"axis", axis}, {"dtype", dtype}});
}

namespace {
DType arange_default_dtype(Scalar start, Scalar stop, Scalar step) {
  return (start.is_floating() || stop.is_floating() || step.is_floating()) ? DType::f32
                                                                           : DType::i64;
}
}  // namespace

Tensor arange(Scalar start, Scalar stop, Scalar step) {
  return arange(start, stop, step, arange_default_dtype(start, stop, step));
}

Tensor arange(Scalar start, Scalar stop, Scalar step, DType dtype) {
  KILN_CHECK(step.to_double() != 0, "arange: step must not be 0 (start={}, stop={})",
             start.to_double(), stop.to_double());
  KILN_CHECK(dtype != DType::boolean, "arange: dtype bool is not supported");
  const bool integral = !start.is_floating() && !stop.is_floating() && !step.is_floating();
  int64_t n = 0;
  if (integral) {
    const int64_t a = start.to_int(), b = stop.to_int(), s = step.to_int();
    if ((s > 0 && b > a) || (s < 0 && b < a)) n = (b - a + s + (s > 0 ? -1 : 1)) / s;
  } else {
    const double len = std::ceil((stop.to_double() - start.to_double()) / step.to_double());
    KILN_CHECK(std::isfinite(len), "arange: non-finite length for start={} stop={} step={}",
               start.to_double(), stop.to_double(), step.to_double());
    n = len > 0 ? static_cast<int64_t>(len) : 0;
  }
  if (integral && is_integral(dtype)) {
    Tensor t = iota(Shape{n}, 0, dtype);
    if (step.to_int() != 1) t = mul(t, step);
    if (start.to_int() != 0) t = add(t, start);
    return t;
  }
  // Floats: start + i * step computed in f64, then rounded once to the dtype.
  Tensor t = iota(Shape{n}, 0, DType::f64);
  t = add(mul(t, Scalar(step.to_double())), Scalar(start.to_double()));
  return dtype == DType::f64 ? t : cast(t, dtype);
}

Tensor linspace(double start, double stop, int64_t n, DType dtype) {
  KILN_CHECK(n >= 0, "linspace: n must be >= 0, got {}", n);
  KILN_CHECK(dtype != DType::boolean, "linspace: dtype bool is not supported");
  if (n <= 1) return full(Shape{n}, start, dtype);
  // start * (1 - w) + stop * w with w = i / (n - 1): both endpoints come out exact.
  Tensor w = div(iota(Shape{n}, 0, DType::f64), Scalar(static_cast<double>(n - 1)));
  Tensor t = add(mul(sub(Scalar(1.0), w), Scalar(start)), mul(w, Scalar(stop)));
  return dtype == DType::f64 ? t : cast(t, dtype);
}

Tensor eye(int64_t n, DType dtype) {
  KILN_CHECK(n >= 0, "eye: n must be >= 0, got {}", n);
  Tensor m = equal(iota(Shape{n, n}, 0, DType::i64), iota(Shape{n, n}, 1, DType::i64));
  return dtype == DType::boolean ? m : cast(m, dtype);
}

Tensor dropout(const Tensor& x, double rate, bool training) {
  if (!training || rate == 0) return x;
  KILN_CHECK(rate > 0 && rate < 1, "dropout: rate must be in [0, 1), got {} (x {})", rate,
             x.type_str());
  // Shaped like x: on unknown dims the mask's shape and counters are taken at run time.
  Tensor mask = random::bernoulli_like(x, 1.0 - rate);
  return where(mask, div(x, Scalar(1.0 - rate)), Scalar(0.0));
}

}  // namespace kiln
