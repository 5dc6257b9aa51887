// Elementwise CUDA kernels: unary, binary, select, cast and fill, over a dense output with
// strided (broadcasting) inputs. One thread per output element, grid-stride. The functors
// follow the CPU kernels' semantics (backends/cpu/elementwise.cpp): NaN-propagating maximum
// and minimum, sign and round of NaN, integer pow (core/int_pow.h, shared with the CPU).

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include <kiln/core/int_pow.h>

#include "grid.cuh"
#include "launch.h"

namespace kiln::cuda::launch {
namespace {

template <class T>
inline constexpr bool kFloat = std::is_floating_point_v<T>;

struct Offsets {
  int64_t at[3];
};

__device__ inline Offsets offsets(const Strides& s, int64_t i, int inputs) {
  Offsets o{{0, 0, 0}};
  for (int d = s.rank - 1; d >= 0; --d) {
    const int64_t n = s.shape[d];
    const int64_t k = i % n;
    i /= n;
    for (int j = 0; j < inputs; ++j)
      o.at[j] += k * s.in[j][d];
  }
  return o;
}

template <class R, class T, class F>
__global__ void unary_k(R* out, const T* x, Strides s, int64_t n, F f) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = f(x[offsets(s, i, 1).at[0]]);
}

template <class R, class T, class F>
__global__ void binary_k(R* out, const T* a, const T* b, Strides s, int64_t n, F f) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Offsets o = offsets(s, i, 2);
    out[i] = f(a[o.at[0]], b[o.at[1]]);
  }
}

template <class T>
__global__ void select_k(T* out, const bool* c, const T* a, const T* b, Strides s, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Offsets o = offsets(s, i, 3);
    out[i] = c[o.at[0]] ? a[o.at[1]] : b[o.at[2]];
  }
}

template <class T>
__global__ void adam_k(const T* var, const T* m, const T* v, const T* g, T* var_out, T* m_out,
                       T* v_out, int64_t n, T lr, T b1, T c1, T b2, T c2, T eps) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const T mi = b1 * m[i] + c1 * g[i];
    const T vi = b2 * v[i] + c2 * g[i] * g[i];
    m_out[i] = mi;
    v_out[i] = vi;
    var_out[i] = var[i] - lr * mi / (sqrt(vi) + eps);
  }
}

template <class T>
__global__ void fill_k(T* out, T v, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = v;
}

// ---- functors --------------------------------------------------------------------------------

template <Unary op>
struct UnaryF {
  template <class T>
  __device__ T operator()(T x) const {
    if constexpr (op == Unary::neg) return static_cast<T>(-x);
    if constexpr (op == Unary::abs) {
      if constexpr (std::is_unsigned_v<T>)
        return x;
      else
        return x < T(0) ? static_cast<T>(-x) : x;
    }
    if constexpr (op == Unary::square) return static_cast<T>(x * x);
    if constexpr (op == Unary::sign) {
      if constexpr (kFloat<T>)
        if (isnan(x)) return x;
      if constexpr (std::is_unsigned_v<T>)
        return static_cast<T>(x > T(0));
      else
        return static_cast<T>((x > T(0)) - (x < T(0)));
    }
    if constexpr (op == Unary::relu) return x > T(0) ? x : T(0);
    if constexpr (op == Unary::copy) return x;
    if constexpr (kFloat<T>) {
      if constexpr (op == Unary::exp) return exp(x);
      if constexpr (op == Unary::log) return log(x);
      if constexpr (op == Unary::log1p) return log1p(x);
      if constexpr (op == Unary::expm1) return expm1(x);
      if constexpr (op == Unary::sqrt) return sqrt(x);
      if constexpr (op == Unary::rsqrt) return T(1) / sqrt(x);
      if constexpr (op == Unary::tanh) return tanh(x);
      if constexpr (op == Unary::sigmoid) {
        const T e = exp(-fabs(x));
        return x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
      }
      if constexpr (op == Unary::erf) return erf(x);
      if constexpr (op == Unary::sin) return sin(x);
      if constexpr (op == Unary::cos) return cos(x);
      if constexpr (op == Unary::floor) return floor(x);
      if constexpr (op == Unary::ceil) return ceil(x);
      if constexpr (op == Unary::round) return rint(x);
    }
    return x;
  }
};

struct LogicalNotF {
  __device__ bool operator()(bool x) const { return !x; }
};

// Integer division as backends/cpu/elementwise.cpp's Div and FloorDiv. The kernels' callers
// reject zero divisors before the launch (kernels.cpp); b == 0 still gives 0 here so that no
// input has an undefined result. b == -1 negates with wrap-around (the minimum stays the
// minimum), as both CPU functors do (a hardware division would trap on it).
template <class T>
__device__ T int_div(T a, T b) {
  if (b == T(0)) return T(0);
  if constexpr (std::is_signed_v<T>)
    if (b == T(-1)) return static_cast<T>(0 - static_cast<std::make_unsigned_t<T>>(a));
  return static_cast<T>(a / b);
}

template <class T>
__device__ T int_floor_div(T a, T b) {
  if constexpr (std::is_unsigned_v<T>) {  // bool included, as on the CPU
    return b == T(0) ? T(0) : static_cast<T>(a / b);
  } else {
    if (b == 0) return 0;
    if (b == -1) return static_cast<T>(0 - static_cast<std::make_unsigned_t<T>>(a));
    T q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
    return q;
  }
}

// Comparisons and logical ops write bool, the others T. Spelled out rather than deduced from
// BinaryF's return type: nvcc's host pass sees every __device__ function as returning void,
// so a launch whose template arguments come from decltype(BinaryF{}(a, b)) instantiates a
// kernel that the device code does not have (cudaErrorInvalidDeviceFunction at launch).
template <Binary op, class T>
using BinaryResult = std::conditional_t<(op >= Binary::equal), bool, T>;
static_assert(Binary::equal < Binary::not_equal && Binary::logical_or > Binary::equal &&
              Binary::minimum < Binary::equal);

template <Binary op>
struct BinaryF {
  template <class T>
  __device__ BinaryResult<op, T> operator()(T a, T b) const {
    if constexpr (op == Binary::add) return static_cast<T>(a + b);
    if constexpr (op == Binary::sub) return static_cast<T>(a - b);
    if constexpr (op == Binary::mul) return static_cast<T>(a * b);
    if constexpr (op == Binary::div) {
      if constexpr (kFloat<T>)
        return a / b;
      else
        return int_div(a, b);
    }
    if constexpr (op == Binary::floor_div) {
      if constexpr (kFloat<T>)
        return static_cast<T>(floor(a / b));
      else
        return int_floor_div(a, b);
    }
    if constexpr (op == Binary::pow) {
      if constexpr (kFloat<T>)
        return static_cast<T>(pow(a, b));
      else
        return int_pow(a, b);
    }
    if constexpr (op == Binary::maximum || op == Binary::minimum) {
      if constexpr (kFloat<T>)
        if (isnan(a) || isnan(b)) return static_cast<T>(a + b);
      if constexpr (op == Binary::maximum) return a > b ? a : b;
      return a < b ? a : b;
    }
    if constexpr (op == Binary::equal) return a == b;
    if constexpr (op == Binary::not_equal) return a != b;
    if constexpr (op == Binary::less) return a < b;
    if constexpr (op == Binary::less_equal) return a <= b;
    if constexpr (op == Binary::greater) return a > b;
    if constexpr (op == Binary::greater_equal) return a >= b;
    if constexpr (op == Binary::logical_and) return static_cast<bool>(a) && static_cast<bool>(b);
    if constexpr (op == Binary::logical_or) return static_cast<bool>(a) || static_cast<bool>(b);
  }
};

template <class F>
void visit(int dtype, F&& f) {
  switch (dtype) {
    case kBool:
      return f(bool{});
    case kU8:
      return f(uint8_t{});
    case kI32:
      return f(int32_t{});
    case kI64:
      return f(int64_t{});
    case kF32:
      return f(float{});
    default:
      return f(double{});
  }
}

template <Unary op>
int run_unary(int dtype, void* out, const void* x, const Strides& s, int64_t n, void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  if constexpr (op == Unary::logical_not) {
    unary_k<<<blocks_for(n), 256, 0, st>>>(static_cast<bool*>(out), static_cast<const bool*>(x), s,
                                           n, LogicalNotF{});
  } else {
    visit(dtype, [&](auto tag) {
      using T = decltype(tag);
      unary_k<<<blocks_for(n), 256, 0, st>>>(static_cast<T*>(out), static_cast<const T*>(x), s, n,
                                             UnaryF<op>{});
    });
  }
  return static_cast<int>(cudaGetLastError());
}

template <Binary op>
int run_binary(int dtype, void* out, const void* a, const void* b, const Strides& s, int64_t n,
               void* stream) {
  auto st = static_cast<cudaStream_t>(stream);
  visit(dtype, [&](auto tag) {
    using T = decltype(tag);
    using R = BinaryResult<op, T>;
    binary_k<<<blocks_for(n), 256, 0, st>>>(static_cast<R*>(out), static_cast<const T*>(a),
                                            static_cast<const T*>(b), s, n, BinaryF<op>{});
  });
  return static_cast<int>(cudaGetLastError());
}

template <class To>
struct CastF {
  template <class From>
  __device__ To operator()(From v) const {
    if constexpr (std::is_same_v<To, bool>) return v != From(0);
    return static_cast<To>(v);
  }
};

}  // namespace

int unary(Unary op, int dtype, void* out, const void* x, const Strides& s, int64_t n,
          void* stream) {
  if (n == 0) return 0;
  switch (op) {
#define KILN_UNARY(name) \
  case Unary::name:      \
    return run_unary<Unary::name>(dtype, out, x, s, n, stream);
    KILN_UNARY(neg)
    KILN_UNARY(abs)
    KILN_UNARY(square)
    KILN_UNARY(sign)
    KILN_UNARY(relu)
    KILN_UNARY(exp)
    KILN_UNARY(log)
    KILN_UNARY(log1p)
    KILN_UNARY(expm1)
    KILN_UNARY(sqrt)
    KILN_UNARY(rsqrt)
    KILN_UNARY(tanh)
    KILN_UNARY(sigmoid)
    KILN_UNARY(erf)
    KILN_UNARY(sin)
    KILN_UNARY(cos)
    KILN_UNARY(floor)
    KILN_UNARY(ceil)
    KILN_UNARY(round)
    KILN_UNARY(logical_not)
    KILN_UNARY(copy)
#undef KILN_UNARY
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int binary(Binary op, int dtype, void* out, const void* a, const void* b, const Strides& s,
           int64_t n, void* stream) {
  if (n == 0) return 0;
  switch (op) {
#define KILN_BINARY(name) \
  case Binary::name:      \
    return run_binary<Binary::name>(dtype, out, a, b, s, n, stream);
    KILN_BINARY(add)
    KILN_BINARY(sub)
    KILN_BINARY(mul)
    KILN_BINARY(div)
    KILN_BINARY(floor_div)
    KILN_BINARY(pow)
    KILN_BINARY(maximum)
    KILN_BINARY(minimum)
    KILN_BINARY(equal)
    KILN_BINARY(not_equal)
    KILN_BINARY(less)
    KILN_BINARY(less_equal)
    KILN_BINARY(greater)
    KILN_BINARY(greater_equal)
    KILN_BINARY(logical_and)
    KILN_BINARY(logical_or)
#undef KILN_BINARY
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

int select(int dtype, void* out, const void* cond, const void* a, const void* b, const Strides& s,
           int64_t n, void* stream) {
  if (n == 0) return 0;
  visit(dtype, [&](auto tag) {
    using T = decltype(tag);
    select_k<<<blocks_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<T*>(out), static_cast<const bool*>(cond), static_cast<const T*>(a),
        static_cast<const T*>(b), s, n);
  });
  return static_cast<int>(cudaGetLastError());
}

int cast(int from, int to, void* out, const void* x, const Strides& s, int64_t n, void* stream) {
  if (n == 0) return 0;
  visit(to, [&](auto to_tag) {
    using To = decltype(to_tag);
    visit(from, [&](auto from_tag) {
      using From = decltype(from_tag);
      unary_k<<<blocks_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(
          static_cast<To*>(out), static_cast<const From*>(x), s, n, CastF<To>{});
    });
  });
  return static_cast<int>(cudaGetLastError());
}

int adam(int dtype, const void* var, const void* m, const void* v, const void* g, void* var_out,
         void* m_out, void* v_out, int64_t n, double lr, double beta1, double beta2, double eps,
         void* stream) {
  if (n == 0) return 0;
  auto go = [&](auto tag) {
    using T = decltype(tag);
    adam_k<<<blocks_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const T*>(var), static_cast<const T*>(m), static_cast<const T*>(v),
        static_cast<const T*>(g), static_cast<T*>(var_out), static_cast<T*>(m_out),
        static_cast<T*>(v_out), n, static_cast<T>(lr), static_cast<T>(beta1),
        static_cast<T>(1 - beta1), static_cast<T>(beta2), static_cast<T>(1 - beta2),
        static_cast<T>(eps));
  };
  return floating(dtype, go);
}

int fill(int dtype, void* out, double value, int64_t n, void* stream) {
  if (n == 0) return 0;
  visit(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T v = std::is_same_v<T, bool> ? static_cast<T>(value != 0) : static_cast<T>(value);
    fill_k<<<blocks_for(n), 256, 0, static_cast<cudaStream_t>(stream)>>>(static_cast<T*>(out), v,
                                                                         n);
  });
  return static_cast<int>(cudaGetLastError());
}

}  // namespace kiln::cuda::launch
