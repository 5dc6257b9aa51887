// CPU kernels of the elementwise primitives: one functor per op, instantiated per dtype over
// the strided loop of loops.h.

#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include <kiln/backends/cpu/kernel_util.h>
#include <kiln/backends/cpu/loops.h>
#include <kiln/core/int_pow.h>

namespace kiln::cpu {
namespace {

template <class T>
constexpr bool kFloat = std::is_floating_point_v<T>;

// Signed integer arithmetic wraps (two's complement), as in TF and NumPy, instead of being
// undefined: it is done in the unsigned type of the same width.
template <class T>
struct WideOf {
  using type = T;
};
template <>
struct WideOf<bool> {
  using type = int;
};
template <>
struct WideOf<int32_t> {
  using type = uint32_t;
};
template <>
struct WideOf<int64_t> {
  using type = uint64_t;
};
template <class T>
using Wide = typename WideOf<T>::type;

// ---- functors ------------------------------------------------------------------------------
struct Neg {
  template <class T>
  T operator()(T x) const {
    if constexpr (std::is_same_v<T, bool>)
      return x;
    else if constexpr (kFloat<T>)
      return -x;  // IEEE negation: neg(0.0) is -0.0
    else
      return static_cast<T>(Wide<T>(0) - static_cast<Wide<T>>(x));
  }
};
struct Abs {
  template <class T>
  T operator()(T x) const {
    if constexpr (std::is_unsigned_v<T> || std::is_same_v<T, bool>)
      return x;
    else
      return x < 0 ? Neg{}(x) : x;
  }
};
struct Square {
  template <class T>
  T operator()(T x) const {
    return static_cast<T>(static_cast<Wide<T>>(x) * static_cast<Wide<T>>(x));
  }
};
struct Sign {
  template <class T>
  T operator()(T x) const {
    if constexpr (kFloat<T>)
      return std::isnan(x) ? x : static_cast<T>((x > 0) - (x < 0));
    else
      return static_cast<T>((x > T(0)) - (x < T(0)));
  }
};
struct Relu {
  template <class T>
  T operator()(T x) const {
    return x > T(0) ? x : T(0);
  }
};
struct Exp {
  template <class T>
  T operator()(T x) const {
    return std::exp(x);
  }
};
struct Log {
  template <class T>
  T operator()(T x) const {
    return std::log(x);
  }
};
struct Log1p {
  template <class T>
  T operator()(T x) const {
    return std::log1p(x);
  }
};
struct Expm1 {
  template <class T>
  T operator()(T x) const {
    return std::expm1(x);
  }
};
struct Sqrt {
  template <class T>
  T operator()(T x) const {
    return std::sqrt(x);
  }
};
struct Rsqrt {
  template <class T>
  T operator()(T x) const {
    return T(1) / std::sqrt(x);
  }
};
struct Tanh {
  template <class T>
  T operator()(T x) const {
    return std::tanh(x);
  }
};
struct Sigmoid {
  template <class T>
  T operator()(T x) const {
    // Stable on both tails: exp of a non-positive number only.
    const T e = std::exp(-std::abs(x));
    return x >= 0 ? T(1) / (T(1) + e) : e / (T(1) + e);
  }
};
struct Erf {
  template <class T>
  T operator()(T x) const {
    return std::erf(x);
  }
};
struct Sin {
  template <class T>
  T operator()(T x) const {
    return std::sin(x);
  }
};
struct Cos {
  template <class T>
  T operator()(T x) const {
    return std::cos(x);
  }
};
struct Floor {
  template <class T>
  T operator()(T x) const {
    return std::floor(x);
  }
};
struct Ceil {
  template <class T>
  T operator()(T x) const {
    return std::ceil(x);
  }
};
struct Round {
  template <class T>
  T operator()(T x) const {
    return std::nearbyint(x);
  }
};
struct LogicalNot {
  template <class T>
  T operator()(T x) const {
    return !x;
  }
};

struct Add {
  template <class T>
  T operator()(T a, T b) const {
    return static_cast<T>(static_cast<Wide<T>>(a) + static_cast<Wide<T>>(b));
  }
};
struct Sub {
  template <class T>
  T operator()(T a, T b) const {
    return static_cast<T>(static_cast<Wide<T>>(a) - static_cast<Wide<T>>(b));
  }
};
struct Mul {
  template <class T>
  T operator()(T a, T b) const {
    return static_cast<T>(static_cast<Wide<T>>(a) * static_cast<Wide<T>>(b));
  }
};
struct Div {
  template <class T>
  T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
      // Zero divisors are rejected before the loop; min / -1 wraps (x86's idiv would trap).
      if (b == 0) return 0;
      if (b == -1) return static_cast<T>(0 - static_cast<std::make_unsigned_t<T>>(a));
    }
    return a / b;
  }
};
struct FloorDiv {
  template <class T>
  T operator()(T a, T b) const {
    if constexpr (kFloat<T>) {
      return std::floor(a / b);
    } else if constexpr (std::is_unsigned_v<T>) {
      return b == 0 ? T(0) : static_cast<T>(a / b);
    } else {
      if (b == 0) return 0;  // rejected before the loop; kept so the loop never traps
      if (b == -1) return static_cast<T>(0 - static_cast<std::make_unsigned_t<T>>(a));
      T q = a / b;
      if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
      return q;
    }
  }
};
struct Pow {
  template <class T>
  T operator()(T a, T b) const {
    if constexpr (kFloat<T>)
      return std::pow(a, b);
    else
      return int_pow(a, b);
  }
};
// maximum/minimum propagate NaN, as NumPy and TF do.
struct Maximum {
  template <class T>
  T operator()(T a, T b) const {
    if constexpr (kFloat<T>)
      if (std::isnan(a) || std::isnan(b)) return a + b;
    return a > b ? a : b;
  }
};
struct Minimum {
  template <class T>
  T operator()(T a, T b) const {
    if constexpr (kFloat<T>)
      if (std::isnan(a) || std::isnan(b)) return a + b;
    return a < b ? a : b;
  }
};
struct Equal {
  template <class T>
  bool operator()(T a, T b) const {
    return a == b;
  }
};
struct NotEqual {
  template <class T>
  bool operator()(T a, T b) const {
    return a != b;
  }
};
struct Less {
  template <class T>
  bool operator()(T a, T b) const {
    return a < b;
  }
};
struct LessEqual {
  template <class T>
  bool operator()(T a, T b) const {
    return a <= b;
  }
};
struct Greater {
  template <class T>
  bool operator()(T a, T b) const {
    return a > b;
  }
};
struct GreaterEqual {
  template <class T>
  bool operator()(T a, T b) const {
    return a >= b;
  }
};
struct LogicalAnd {
  template <class T>
  bool operator()(T a, T b) const {
    return a && b;
  }
};
struct LogicalOr {
  template <class T>
  bool operator()(T a, T b) const {
    return a || b;
  }
};

// ---- loops ---------------------------------------------------------------------------------
template <class R, class T, class F>
void unary_run(R* __restrict out, const T* __restrict x, int64_t sx, int64_t n, F f) {
  if (sx == 1) {
    for (int64_t i = 0; i < n; ++i)
      out[i] = f(x[i]);
  } else {
    for (int64_t i = 0; i < n; ++i)
      out[i] = f(x[i * sx]);
  }
}

template <class R, class T, class F>
void binary_run(R* __restrict out, const T* __restrict a, int64_t sa, const T* __restrict b,
                int64_t sb, int64_t n, F f) {
  if (sa == 1 && sb == 1) {
    for (int64_t i = 0; i < n; ++i)
      out[i] = f(a[i], b[i]);
  } else if (sa == 1 && sb == 0) {
    const T bv = *b;
    for (int64_t i = 0; i < n; ++i)
      out[i] = f(a[i], bv);
  } else if (sa == 0 && sb == 1) {
    const T av = *a;
    for (int64_t i = 0; i < n; ++i)
      out[i] = f(av, b[i]);
  } else {
    for (int64_t i = 0; i < n; ++i)
      out[i] = f(a[i * sa], b[i * sb]);
  }
}

template <class F, bool kFloatOnly>
std::vector<Tensor> unary_kernel(std::span<const Tensor> in, const Attrs&,
                                 std::span<const TensorType> out_types) {
  Tensor out = alloc(out_types[0]);
  const LoopPlan p = plan_loop(out.shape(), in);
  visit_dtype(in[0].dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (!kFloatOnly || kFloat<T>) {
      const T* x = in[0].data<T>();
      T* o = out.mutable_data<T>();
      run_loop(p, [&](int64_t i, const int64_t* off, int64_t n, const int64_t* s) {
        unary_run(o + i, x + off[0], s[0], n, F{});
      });
    } else {
      KILN_ASSERT(false, "float-only kernel called with {}", name(in[0].dtype()));
    }
  });
  return {out};
}

enum class Result { same, boolean };

template <class F, Result kResult>
std::vector<Tensor> binary_kernel(std::span<const Tensor> in, const Attrs&,
                                  std::span<const TensorType> out_types) {
  Tensor out = alloc(out_types[0]);
  const LoopPlan p = plan_loop(out.shape(), in);
  visit_dtype(in[0].dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    using R = std::conditional_t<kResult == Result::boolean, bool, T>;
    const T* a = in[0].data<T>();
    const T* b = in[1].data<T>();
    R* o = out.mutable_data<R>();
    run_loop(p, [&](int64_t i, const int64_t* off, int64_t n, const int64_t* s) {
      binary_run(o + i, a + off[0], s[0], b + off[1], s[1], n, F{});
    });
  });
  return {out};
}

// Integer division by zero is a user error, found before the loop (which must not throw).
void check_no_integer_zero(const Tensor& b, const char* op) {
  if (is_floating(b.dtype())) return;
  Tensor d = dense(b);
  visit_dtype(d.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = d.data<T>();
    for (int64_t i = 0; i < d.numel(); ++i)
      KILN_CHECK(p[i] != T(0), "{}: integer division by zero (divisor {})", op, b.type_str());
  });
}

std::vector<Tensor> floor_div_kernel(std::span<const Tensor> in, const Attrs& a,
                                     std::span<const TensorType> out) {
  check_no_integer_zero(in[1], "floor_div");
  return binary_kernel<FloorDiv, Result::same>(in, a, out);
}

std::vector<Tensor> div_kernel(std::span<const Tensor> in, const Attrs& a,
                               std::span<const TensorType> out) {
  check_no_integer_zero(in[1], "div");
  return binary_kernel<Div, Result::same>(in, a, out);
}

std::vector<Tensor> select_kernel(std::span<const Tensor> in, const Attrs&,
                                  std::span<const TensorType> out_types) {
  Tensor out = alloc(out_types[0]);
  const LoopPlan p = plan_loop(out.shape(), in);
  visit_dtype(in[1].dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const bool* c = in[0].data<bool>();
    const T* a = in[1].data<T>();
    const T* b = in[2].data<T>();
    T* o = out.mutable_data<T>();
    run_loop(p, [&](int64_t i, const int64_t* off, int64_t n, const int64_t* s) {
      const bool* cc = c + off[0];
      const T* aa = a + off[1];
      const T* bb = b + off[2];
      if (s[0] == 1 && s[1] == 1 && s[2] == 1) {
        for (int64_t j = 0; j < n; ++j)
          o[i + j] = cc[j] ? aa[j] : bb[j];
      } else {
        for (int64_t j = 0; j < n; ++j)
          o[i + j] = cc[j * s[0]] ? aa[j * s[1]] : bb[j * s[2]];
      }
    });
  });
  return {out};
}

template <class To, class From>
To convert(From v) {
  if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else if constexpr (kFloat<From> && !kFloat<To>) {
    // Float to integer: NaN gives 0 and out-of-range values saturate, instead of UB.
    if (std::isnan(v)) return To(0);
    if (v <= static_cast<From>(std::numeric_limits<To>::lowest()))
      return std::numeric_limits<To>::lowest();
    if (v >= static_cast<From>(std::numeric_limits<To>::max()))
      return std::numeric_limits<To>::max();
    return static_cast<To>(v);
  } else {
    return static_cast<To>(v);
  }
}

std::vector<Tensor> cast_kernel(std::span<const Tensor> in, const Attrs&,
                                std::span<const TensorType> out_types) {
  Tensor out = alloc(out_types[0]);
  const LoopPlan p = plan_loop(out.shape(), in);
  visit_dtype(in[0].dtype(), [&](auto from_tag) {
    using From = typename decltype(from_tag)::type;
    visit_dtype(out.dtype(), [&](auto to_tag) {
      using To = typename decltype(to_tag)::type;
      const From* x = in[0].data<From>();
      To* o = out.mutable_data<To>();
      run_loop(p, [&](int64_t i, const int64_t* off, int64_t n, const int64_t* s) {
        unary_run(o + i, x + off[0], s[0], n, [](From v) { return convert<To>(v); });
      });
    });
  });
  return {out};
}

std::vector<Tensor> copy_kernel(std::span<const Tensor> in, const Attrs&,
                                std::span<const TensorType> out_types) {
  Tensor out = alloc(out_types[0]);
  const LoopPlan p = plan_loop(out.shape(), in);
  const size_t es = size_of(out.dtype());
  const char* x = static_cast<const char*>(in[0].raw_data());
  char* o = out.mutable_data<char>();
  // Copies move bytes: dispatch on the element size only.
  auto run = [&](auto word) {
    using W = decltype(word);
    run_loop(p, [&](int64_t i, const int64_t* off, int64_t n, const int64_t* s) {
      if (s[0] == 1) {
        std::memcpy(o + i * es, x + off[0] * es, n * es);
      } else {
        unary_run(reinterpret_cast<W*>(o) + i, reinterpret_cast<const W*>(x) + off[0], s[0], n,
                  [](W v) { return v; });
      }
    });
  };
  if (es == 1)
    run(uint8_t{});
  else if (es == 4)
    run(uint32_t{});
  else
    run(uint64_t{});
  return {out};
}

std::vector<Tensor> stop_gradient_kernel(std::span<const Tensor> in, const Attrs&,
                                         std::span<const TensorType>) {
  return {Tensor::view_of(in[0], in[0].shape(), in[0].strides(), in[0].offset())};
}

KILN_STATIC_INIT {
  register_cpu_kernel("neg", unary_kernel<Neg, false>);
  register_cpu_kernel("abs", unary_kernel<Abs, false>);
  register_cpu_kernel("square", unary_kernel<Square, false>);
  register_cpu_kernel("sign", unary_kernel<Sign, false>);
  register_cpu_kernel("relu", unary_kernel<Relu, false>);
  register_cpu_kernel("exp", unary_kernel<Exp, true>);
  register_cpu_kernel("log", unary_kernel<Log, true>);
  register_cpu_kernel("log1p", unary_kernel<Log1p, true>);
  register_cpu_kernel("expm1", unary_kernel<Expm1, true>);
  register_cpu_kernel("sqrt", unary_kernel<Sqrt, true>);
  register_cpu_kernel("rsqrt", unary_kernel<Rsqrt, true>);
  register_cpu_kernel("tanh", unary_kernel<Tanh, true>);
  register_cpu_kernel("sigmoid", unary_kernel<Sigmoid, true>);
  register_cpu_kernel("erf", unary_kernel<Erf, true>);
  register_cpu_kernel("sin", unary_kernel<Sin, true>);
  register_cpu_kernel("cos", unary_kernel<Cos, true>);
  register_cpu_kernel("floor", unary_kernel<Floor, true>);
  register_cpu_kernel("ceil", unary_kernel<Ceil, true>);
  register_cpu_kernel("round", unary_kernel<Round, true>);
  register_cpu_kernel("logical_not", unary_kernel<LogicalNot, false>);
  register_cpu_kernel("add", binary_kernel<Add, Result::same>);
  register_cpu_kernel("sub", binary_kernel<Sub, Result::same>);
  register_cpu_kernel("mul", binary_kernel<Mul, Result::same>);
  register_cpu_kernel("div", div_kernel);
  register_cpu_kernel("floor_div", floor_div_kernel);
  register_cpu_kernel("pow", binary_kernel<Pow, Result::same>);
  register_cpu_kernel("maximum", binary_kernel<Maximum, Result::same>);
  register_cpu_kernel("minimum", binary_kernel<Minimum, Result::same>);
  register_cpu_kernel("equal", binary_kernel<Equal, Result::boolean>);
  register_cpu_kernel("not_equal", binary_kernel<NotEqual, Result::boolean>);
  register_cpu_kernel("less", binary_kernel<Less, Result::boolean>);
  register_cpu_kernel("less_equal", binary_kernel<LessEqual, Result::boolean>);
  register_cpu_kernel("greater", binary_kernel<Greater, Result::boolean>);
  register_cpu_kernel("greater_equal", binary_kernel<GreaterEqual, Result::boolean>);
  register_cpu_kernel("logical_and", binary_kernel<LogicalAnd, Result::boolean>);
  register_cpu_kernel("logical_or", binary_kernel<LogicalOr, Result::boolean>);
  register_cpu_kernel("select", select_kernel);
  register_cpu_kernel("cast", cast_kernel);
  register_cpu_kernel("copy", copy_kernel);
  register_cpu_kernel("stop_gradient", stop_gradient_kernel);
};

}  // namespace
}  // namespace kiln::cpu
