// Elementwise primitives (declared once here, with their inference rules) and the public
// elementwise functions: promotion, weak scalars and composites such as gelu and clip.

#include <cmath>

#include <kiln/core/dispatch.h>
#include <kiln/core/ops.h>

namespace kiln {
namespace {

std::vector<TensorType> infer_unary_same(const OpDef& def, std::span<const TensorType> in,
                                         const Attrs&) {
  return {in[0]};
}

std::vector<TensorType> infer_unary_float(const OpDef& def, std::span<const TensorType> in,
                                          const Attrs& a) {
  KILN_CHECK(is_floating(in[0].dtype), "{}: expects a floating-point tensor, got {}{}", def.name(),
             name(in[0].dtype), in[0].shape.str());
  return {in[0]};
}

std::vector<TensorType> infer_unary_bool(const OpDef& def, std::span<const TensorType> in,
                                         const Attrs& a) {
  KILN_CHECK(in[0].dtype == DType::boolean, "{}: expects a bool tensor, got {}{}", def.name(),
             name(in[0].dtype), in[0].shape.str());
  return {in[0]};
}

void check_same_dtype(std::span<const TensorType> in, const std::string& op, size_t first = 0) {
  for (size_t i = first + 1; i < in.size(); ++i)
    KILN_CHECK(in[i].dtype == in[first].dtype,
               "{}: operand dtypes differ: {}{} vs {}{} (cast one of them first)", op,
               name(in[first].dtype), in[first].shape.str(), name(in[i].dtype), in[i].shape.str());
}

std::vector<TensorType> infer_binary(const OpDef& def, std::span<const TensorType> in,
                                     const Attrs& a) {
  const std::string& op = def.name();
  check_same_dtype(in, op);
  return {{in[0].dtype, broadcast_shapes(in[0].shape, in[1].shape, op.c_str())}};
}

std::vector<TensorType> infer_compare(const OpDef& def, std::span<const TensorType> in,
                                      const Attrs& a) {
  auto out = infer_binary(def, in, a);
  out[0].dtype = DType::boolean;
  return out;
}

std::vector<TensorType> infer_logical(const OpDef& def, std::span<const TensorType> in,
                                      const Attrs& a) {
  const std::string& op = def.name();
  for (const auto& t : in)
    KILN_CHECK(t.dtype == DType::boolean, "{}: expects bool operands, got {}{}", op, name(t.dtype),
               t.shape.str());
  return {{DType::boolean, broadcast_shapes(in[0].shape, in[1].shape, op.c_str())}};
}

std::vector<TensorType> infer_select(const OpDef& def, std::span<const TensorType> in,
                                     const Attrs&) {
  KILN_CHECK(in[0].dtype == DType::boolean, "where: the condition must be bool, got {}{}",
             name(in[0].dtype), in[0].shape.str());
  check_same_dtype(in, "where", 1);
  Shape s = broadcast_shapes(in[0].shape, in[1].shape, "where");
  return {{in[1].dtype, broadcast_shapes(s, in[2].shape, "where")}};
}

std::vector<TensorType> infer_cast(const OpDef& def, std::span<const TensorType> in,
                                   const Attrs& a) {
  return {{a.dtype("dtype"), in[0].shape}};
}

// Every elementwise primitive, once: name, inputs, inference and flags.
struct ElementwiseSpec {
  const char* name;
  int inputs;
  InferFn infer;
  uint32_t flags;
};

constexpr uint32_t kEw = kElementwise;
constexpr uint32_t kNd = kElementwise | kNotDifferentiable;
const ElementwiseSpec kSpecs[] = {
    {"neg", 1, infer_unary_same, kEw},
    {"abs", 1, infer_unary_same, kEw},
    {"square", 1, infer_unary_same, kEw},
    {"sign", 1, infer_unary_same, kEw},
    {"relu", 1, infer_unary_same, kEw},
    {"exp", 1, infer_unary_float, kEw},
    {"log", 1, infer_unary_float, kEw},
    {"log1p", 1, infer_unary_float, kEw},
    {"expm1", 1, infer_unary_float, kEw},
    {"sqrt", 1, infer_unary_float, kEw},
    {"rsqrt", 1, infer_unary_float, kEw},
    {"tanh", 1, infer_unary_float, kEw},
    {"sigmoid", 1, infer_unary_float, kEw},
    {"erf", 1, infer_unary_float, kEw},
    {"sin", 1, infer_unary_float, kEw},
    {"cos", 1, infer_unary_float, kEw},
    {"floor", 1, infer_unary_float, kEw},
    {"ceil", 1, infer_unary_float, kEw},
    {"round", 1, infer_unary_float, kEw},
    {"logical_not", 1, infer_unary_bool, kNd},
    {"add", 2, infer_binary, kEw | kCommutative},
    {"sub", 2, infer_binary, kEw},
    {"mul", 2, infer_binary, kEw | kCommutative},
    {"div", 2, infer_binary, kEw},
    {"floor_div", 2, infer_binary, kNd},
    {"pow", 2, infer_binary, kEw},
    {"maximum", 2, infer_binary, kEw | kCommutative},
    {"minimum", 2, infer_binary, kEw | kCommutative},
    {"equal", 2, infer_compare, kNd | kCommutative},
    {"not_equal", 2, infer_compare, kNd | kCommutative},
    {"less", 2, infer_compare, kNd},
    {"less_equal", 2, infer_compare, kNd},
    {"greater", 2, infer_compare, kNd},
    {"greater_equal", 2, infer_compare, kNd},
    {"logical_and", 2, infer_logical, kNd | kCommutative},
    {"logical_or", 2, infer_logical, kNd | kCommutative},
    {"select", 3, infer_select, kEw},
    {"cast", 1, infer_cast, kEw},
    {"copy", 1, infer_unary_same, kEw},
};

KILN_STATIC_INIT {
  for (const auto& s : kSpecs)
    registry().mutable_op(s.name).set_num_inputs(s.inputs).set_infer(s.infer).set_flags(s.flags);
  registry()
      .mutable_op("stop_gradient")
      .set_num_inputs(1)
      .set_infer(infer_unary_same)
      .set_flags(kView | kNotDifferentiable)
      .set_doc("identity whose gradient is zero; the eager kernel returns a view");
};

Tensor call(const OpDef& op, std::initializer_list<Tensor> in) {
  return dispatch1(op, in);
}

#define KILN_OP(var, opname) static const OpDef& var = registry().op(opname)

Tensor to_floating(const Tensor& x) {
  return is_floating(x.dtype()) ? x : cast(x, f32);
}

std::pair<Tensor, Tensor> promoted(const Tensor& a, const Tensor& b, bool no_bool = false) {
  DType t = promote(a.dtype(), b.dtype());
  if (no_bool && t == DType::boolean) t = DType::i32;
  return {cast(a, t), cast(b, t)};
}

Tensor arith(const OpDef& op, const Tensor& a, const Tensor& b) {
  auto [x, y] = promoted(a, b, /*no_bool=*/true);
  return call(op, {x, y});
}

Tensor compare(const OpDef& op, const Tensor& a, const Tensor& b) {
  auto [x, y] = promoted(a, b);
  return call(op, {x, y});
}

}  // namespace

// ---- unary -----------------------------------------------------------------------------------
#define KILN_UNARY_SAME(fn)    \
  Tensor fn(const Tensor& x) { \
    KILN_OP(op, #fn);          \
    return call(op, {x});      \
  }
#define KILN_UNARY_FLOAT(fn)           \
  Tensor fn(const Tensor& x) {         \
    KILN_OP(op, #fn);                  \
    return call(op, {to_floating(x)}); \
  }
KILN_UNARY_SAME(abs)
KILN_UNARY_SAME(neg)
KILN_UNARY_SAME(square)
KILN_UNARY_SAME(sign)
KILN_UNARY_SAME(relu)
KILN_UNARY_FLOAT(exp)
KILN_UNARY_FLOAT(log)
KILN_UNARY_FLOAT(log1p)
KILN_UNARY_FLOAT(expm1)
KILN_UNARY_FLOAT(sqrt)
KILN_UNARY_FLOAT(rsqrt)
KILN_UNARY_FLOAT(tanh)
KILN_UNARY_FLOAT(sigmoid)
KILN_UNARY_FLOAT(erf)
KILN_UNARY_FLOAT(sin)
KILN_UNARY_FLOAT(cos)
#undef KILN_UNARY_SAME
#undef KILN_UNARY_FLOAT

// Rounding an integer tensor leaves it as it is.
#define KILN_UNARY_ROUNDING(fn)                        \
  Tensor fn(const Tensor& x) {                         \
    KILN_OP(op, #fn);                                  \
    return is_floating(x.dtype()) ? call(op, {x}) : x; \
  }
KILN_UNARY_ROUNDING(floor)
KILN_UNARY_ROUNDING(ceil)
KILN_UNARY_ROUNDING(round)
#undef KILN_UNARY_ROUNDING

Tensor logical_not(const Tensor& x) {
  KILN_OP(op, "logical_not");
  return call(op, {cast(x, boolean)});
}

Tensor gelu(const Tensor& x) {
  Tensor xf = to_floating(x);
  return 0.5 * xf * (1.0 + erf(xf * M_SQRT1_2));
}

// ---- binary ----------------------------------------------------------------------------------
#define KILN_BINARY(fn, kind)                   \
  Tensor fn(const Tensor& a, const Tensor& b) { \
    KILN_OP(op, #fn);                           \
    return kind(op, a, b);                      \
  }
KILN_BINARY(add, arith)
KILN_BINARY(sub, arith)
KILN_BINARY(mul, arith)
KILN_BINARY(floor_div, arith)
KILN_BINARY(maximum, arith)
KILN_BINARY(minimum, arith)
KILN_BINARY(equal, compare)
KILN_BINARY(not_equal, compare)
KILN_BINARY(less, compare)
KILN_BINARY(less_equal, compare)
KILN_BINARY(greater, compare)
KILN_BINARY(greater_equal, compare)
#undef KILN_BINARY

Tensor div(const Tensor& a, const Tensor& b) {
  KILN_OP(op, "div");
  auto [x, y] = promoted(a, b);
  return call(op, {to_floating(x), to_floating(y)});  // integers divide truly
}

Tensor pow(const Tensor& a, const Tensor& b) {
  KILN_OP(op, "pow");
  return arith(op, a, b);
}

Tensor logical_and(const Tensor& a, const Tensor& b) {
  KILN_OP(op, "logical_and");
  return call(op, {cast(a, boolean), cast(b, boolean)});
}

Tensor logical_or(const Tensor& a, const Tensor& b) {
  KILN_OP(op, "logical_or");
  return call(op, {cast(a, boolean), cast(b, boolean)});
}

#define KILN_SCALAR_BINARY(fn)                                    \
  Tensor fn(const Tensor& a, Scalar b) {                          \
    return fn(a, scalar_tensor(b, b.weak_dtype_with(a.dtype()))); \
  }                                                               \
  Tensor fn(Scalar a, const Tensor& b) {                          \
    return fn(scalar_tensor(a, a.weak_dtype_with(b.dtype())), b); \
  }
KILN_SCALAR_BINARY(add)
KILN_SCALAR_BINARY(sub)
KILN_SCALAR_BINARY(mul)
KILN_SCALAR_BINARY(div)
KILN_SCALAR_BINARY(floor_div)
KILN_SCALAR_BINARY(maximum)
KILN_SCALAR_BINARY(minimum)
KILN_SCALAR_BINARY(equal)
KILN_SCALAR_BINARY(not_equal)
KILN_SCALAR_BINARY(less)
KILN_SCALAR_BINARY(less_equal)
KILN_SCALAR_BINARY(greater)
KILN_SCALAR_BINARY(greater_equal)
#undef KILN_SCALAR_BINARY

Tensor pow(const Tensor& a, Scalar b) {
  if (b.is_floating() || is_floating(a.dtype())) {
    const double e = b.to_double();
    if (e == 1.0) return to_floating(a).dtype() == a.dtype() ? a : cast(a, f32);
    if (e == 2.0 && is_floating(a.dtype())) return square(a);
  }
  return pow(a, scalar_tensor(b, b.weak_dtype_with(a.dtype())));
}
Tensor pow(Scalar a, const Tensor& b) {
  return pow(scalar_tensor(a, a.weak_dtype_with(b.dtype())), b);
}

// ---- selection, casts ------------------------------------------------------------------------
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  KILN_OP(op, "select");
  auto [x, y] = promoted(a, b);
  return dispatch1(op, {cast(cond, boolean), x, y});
}
Tensor where(const Tensor& cond, const Tensor& a, Scalar b) {
  return where(cond, a, scalar_tensor(b, b.weak_dtype_with(a.dtype())));
}
Tensor where(const Tensor& cond, Scalar a, const Tensor& b) {
  return where(cond, scalar_tensor(a, a.weak_dtype_with(b.dtype())), b);
}

Tensor clip(const Tensor& x, Scalar lo, Scalar hi) {
  KILN_CHECK(lo.to_double() <= hi.to_double(), "clip: lo ({}) is greater than hi ({}) for {}",
             lo.to_double(), hi.to_double(), x.type_str());
  return minimum(maximum(x, lo), hi);
}

Tensor cast(const Tensor& x, DType dtype) {
  KILN_CHECK(x.defined(), "cast: the tensor is undefined");
  if (x.dtype() == dtype) return x;
  KILN_OP(op, "cast");
  return dispatch1(op, {x}, Attrs{{"dtype", dtype}});
}

Tensor stop_gradient(const Tensor& x) {
  KILN_OP(op, "stop_gradient");
  return dispatch1(op, {x});
}

}  // namespace kiln
