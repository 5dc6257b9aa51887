// The CUDA eager kernels' registration: shapes, strides and dtypes worked out on the host,
// the launch in the .cu files (launch.h). Elementwise ops read strided and broadcasting
// inputs directly; reductions run one axis at a time; matmul is in blas.cpp.

#include <algorithm>
#include <numeric>

#include <kiln/core/dispatch.h>
#include <kiln/core/ops.h>
#include <kiln/core/registry.h>
#include <kiln/core/tensor.h>

#include "launch.h"
#include "launch_index.h"  // the data check of integer division
#include "runtime.h"

namespace kiln::cuda {
namespace {

using launch::Strides;

Tensor alloc(const TensorType& t, Device d) {
  return Tensor::empty(t.shape, t.dtype, d);
}

// The output's dims and each input's strides over them (0 where it broadcasts).
Strides strides_for(const Shape& out, std::span<const Tensor> in, const char* op) {
  KILN_CHECK(out.rank() <= launch::kMaxRank, "{}: cuda kernels take rank <= {}, got {}", op,
             launch::kMaxRank, out.str());
  Strides s;
  s.rank = static_cast<int>(out.rank());
  for (int64_t d = 0; d < out.rank(); ++d)
    s.shape[d] = out[d];
  for (size_t j = 0; j < in.size(); ++j) {
    const Tensor& t = in[j];
    const int64_t lead = out.rank() - t.rank();
    for (int64_t d = 0; d < t.rank(); ++d)
      s.in[j][lead + d] = t.shape()[d] == 1 && out[lead + d] != 1 ? 0 : t.strides()[d];
  }
  return s;
}

// The data pointer of element 0 (views included).
const void* ptr(const Tensor& t) {
  return t.raw_data();
}

int code(DType d) {
  return static_cast<int>(d);
}

template <launch::Unary op>
std::vector<Tensor> unary_kernel(std::span<const Tensor> in, const Attrs&,
                                 std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard g(dev.index);
  Tensor y = alloc(out[0], dev);
  const Strides s = strides_for(y.shape(), in.subspan(0, 1), "unary");
  check(launch::unary(op, code(in[0].dtype()), y.mutable_data<char>(), ptr(in[0]), s, y.numel(),
                      stream(dev.index)),
        "a unary kernel launch");
  return {y};
}

template <launch::Binary op>
std::vector<Tensor> binary_kernel(std::span<const Tensor> in, const Attrs&,
                                  std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard g(dev.index);
  Tensor y = alloc(out[0], dev);
  const Strides s = strides_for(y.shape(), in.subspan(0, 2), "binary");
  check(launch::binary(op, code(in[0].dtype()), y.mutable_data<char>(), ptr(in[0]), ptr(in[1]), s,
                       y.numel(), stream(dev.index)),
        "a binary kernel launch");
  return {y};
}

// Integer division by zero is a user error, which the CPU raises before its loop. Here a
// check kernel finds the first zero divisor and the host waits for its answer (launch_index.h,
// "data checks"): integer div and floor_div cost one host synchronization per call; floats
// divide by IEEE rules with no check.
void check_no_integer_zero(std::span<const Tensor> in, const char* op) {
  const Tensor& b = in[1];
  if (is_floating(b.dtype())) return;
  const Device dev = b.device();
  Tensor d = b;
  if (!d.is_contiguous()) {
    SuspendHooks quiet;
    d = d.contiguous();
  }
  Tensor word = Tensor::empty(Shape{1}, DType::i64, dev);
  unsigned long long first = launch::kNoError;
  check(launch::first_zero(static_cast<int>(size_of(d.dtype())), ptr(d), d.numel(),
                           word.mutable_data<unsigned long long>(), &first, stream(dev.index)),
        op);
  KILN_CHECK(first == launch::kNoError,
             "{}: integer division by zero (divisor {}) on {}; the first zero is at flat position "
             "{} of the divisor (dividend {})",
             op, b.type_str(), dev.str(), first, in[0].type_str());
}

template <launch::Binary op>
std::vector<Tensor> div_kernel(std::span<const Tensor> in, const Attrs& a,
                               std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard g(dev.index);
  check_no_integer_zero(in, op == launch::Binary::div ? "div" : "floor_div");
  return binary_kernel<op>(in, a, out);
}

std::vector<Tensor> select_kernel(std::span<const Tensor> in, const Attrs&,
                                  std::span<const TensorType> out) {
  const Device dev = in[1].device();
  DeviceGuard g(dev.index);
  Tensor y = alloc(out[0], dev);
  const Strides s = strides_for(y.shape(), in.subspan(0, 3), "select");
  check(launch::select(code(in[1].dtype()), y.mutable_data<char>(), ptr(in[0]), ptr(in[1]),
                       ptr(in[2]), s, y.numel(), stream(dev.index)),
        "select");
  return {y};
}

std::vector<Tensor> cast_kernel(std::span<const Tensor> in, const Attrs&,
                                std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard g(dev.index);
  Tensor y = alloc(out[0], dev);
  const Strides s = strides_for(y.shape(), in.subspan(0, 1), "cast");
  check(launch::cast(code(in[0].dtype()), code(y.dtype()), y.mutable_data<char>(), ptr(in[0]), s,
                     y.numel(), stream(dev.index)),
        "cast");
  return {y};
}

std::vector<Tensor> stop_gradient_kernel(std::span<const Tensor> in, const Attrs&,
                                         std::span<const TensorType>) {
  return {Tensor::view_of(in[0], in[0].shape(), in[0].strides(), in[0].offset())};
}

// A tensor shaped like the input, on its device, filled with `value`.
std::vector<Tensor> fill_like_kernel(std::span<const Tensor> in, const Attrs& a,
                                     std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard g(dev.index);
  Tensor y = alloc(out[0], dev);
  check(launch::fill(code(y.dtype()), y.mutable_data<char>(), a.f("value"), y.numel(),
                     stream(dev.index)),
        "fill_like");
  return {y};
}

std::vector<Tensor> adam_kernel(std::span<const Tensor> in, const Attrs& a,
                                std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard g(dev.index);
  const Tensor var = in[0].contiguous(), m = in[1].contiguous(), v = in[2].contiguous(),
               grad = in[3].contiguous();
  Tensor var_out = alloc(out[0], dev), m_out = alloc(out[1], dev), v_out = alloc(out[2], dev);
  check(launch::adam(code(var.dtype()), ptr(var), ptr(m), ptr(v), ptr(grad),
                     var_out.mutable_data<char>(), m_out.mutable_data<char>(),
                     v_out.mutable_data<char>(), var.numel(), a.f("lr"), a.f("beta1"), a.f("beta2"),
                     a.f("eps"), stream(dev.index)),
        "adam_update");
  return {var_out, m_out, v_out};
}

template <launch::Reduce op>
std::vector<Tensor> reduce_kernel(std::span<const Tensor> in, const Attrs& a,
                                  std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard g(dev.index);
  Tensor x = in[0];
  // Integer sums and products accumulate in the output's dtype (i64), as on the CPU.
  if (x.dtype() != out[0].dtype) {
    SuspendHooks quiet;
    x = cast(x, out[0].dtype);
  }
  x = x.contiguous();
  KILN_CHECK(x.dtype() != DType::boolean && x.dtype() != DType::u8,
             "reduce: {} on {} is not supported yet", x.type_str(), dev.str());
  std::vector<int64_t> axes;
  for (int64_t ax : a.ints("axes"))
    axes.push_back(ax < 0 ? ax + x.rank() : ax);
  std::sort(axes.begin(), axes.end());
  axes.erase(std::unique(axes.begin(), axes.end()), axes.end());
  if (x.numel() == 0 || axes.empty()) {
    Tensor y = alloc(out[0], dev);
    const double identity = op == launch::Reduce::prod ? 1.0 : 0.0;
    if (x.numel() == 0)
      check(launch::fill(code(y.dtype()), y.mutable_data<char>(), identity, y.numel(),
                         stream(dev.index)),
            "reduce (empty)");
    else
      check(launch::unary(launch::Unary::copy, code(y.dtype()), y.mutable_data<char>(), ptr(x),
                          strides_for(y.shape(), std::span<const Tensor>(&x, 1), "reduce"),
                          y.numel(), stream(dev.index)),
            "reduce (copy)");
    return {y};
  }
  // One axis at a time, the last first, keeping the reduced dims as 1.
  Shape shape = x.shape();
  for (auto it = axes.rbegin(); it != axes.rend(); ++it) {
    const int64_t ax = *it;
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < ax; ++d)
      outer *= shape[d];
    for (int64_t d = ax + 1; d < shape.rank(); ++d)
      inner *= shape[d];
    const int64_t reduced = shape[ax];
    std::vector<int64_t> dims = shape.dims();
    dims[static_cast<size_t>(ax)] = 1;
    shape = Shape(dims);
    Tensor y = Tensor::empty(shape, x.dtype(), dev);
    check(launch::reduce(op, code(x.dtype()), y.mutable_data<char>(), ptr(x), outer, reduced, inner,
                         stream(dev.index)),
          "reduce");
    x = y;
  }
  return {x.reshape(out[0].shape)};
}

void reg(const char* op, KernelFn fn) {
  registry().mutable_op(op).set_kernel(DeviceType::cuda, fn);
}

KILN_STATIC_INIT {
  using U = launch::Unary;
  using B = launch::Binary;
  reg("neg", unary_kernel<U::neg>);
  reg("abs", unary_kernel<U::abs>);
  reg("square", unary_kernel<U::square>);
  reg("sign", unary_kernel<U::sign>);
  reg("relu", unary_kernel<U::relu>);
  reg("exp", unary_kernel<U::exp>);
  reg("log", unary_kernel<U::log>);
  reg("log1p", unary_kernel<U::log1p>);
  reg("expm1", unary_kernel<U::expm1>);
  reg("sqrt", unary_kernel<U::sqrt>);
  reg("rsqrt", unary_kernel<U::rsqrt>);
  reg("tanh", unary_kernel<U::tanh>);
  reg("sigmoid", unary_kernel<U::sigmoid>);
  reg("erf", unary_kernel<U::erf>);
  reg("sin", unary_kernel<U::sin>);
  reg("cos", unary_kernel<U::cos>);
  reg("floor", unary_kernel<U::floor>);
  reg("ceil", unary_kernel<U::ceil>);
  reg("round", unary_kernel<U::round>);
  reg("logical_not", unary_kernel<U::logical_not>);
  reg("copy", unary_kernel<U::copy>);
  reg("add", binary_kernel<B::add>);
  reg("sub", binary_kernel<B::sub>);
  reg("mul", binary_kernel<B::mul>);
  reg("div", div_kernel<B::div>);
  reg("floor_div", div_kernel<B::floor_div>);
  reg("pow", binary_kernel<B::pow>);
  reg("maximum", binary_kernel<B::maximum>);
  reg("minimum", binary_kernel<B::minimum>);
  reg("equal", binary_kernel<B::equal>);
  reg("not_equal", binary_kernel<B::not_equal>);
  reg("less", binary_kernel<B::less>);
  reg("less_equal", binary_kernel<B::less_equal>);
  reg("greater", binary_kernel<B::greater>);
  reg("greater_equal", binary_kernel<B::greater_equal>);
  reg("logical_and", binary_kernel<B::logical_and>);
  reg("logical_or", binary_kernel<B::logical_or>);
  reg("select", select_kernel);
  reg("cast", cast_kernel);
  reg("stop_gradient", stop_gradient_kernel);
  reg("fill_like", fill_like_kernel);
  reg("adam_update", adam_kernel);
  reg("reduce_sum", reduce_kernel<launch::Reduce::sum>);
  reg("reduce_max", reduce_kernel<launch::Reduce::max>);
  reg("reduce_min", reduce_kernel<launch::Reduce::min>);
  reg("reduce_prod", reduce_kernel<launch::Reduce::prod>);
};

}  // namespace
}  // namespace kiln::cuda
