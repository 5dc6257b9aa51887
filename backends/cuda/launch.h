#pragma once

// The interface between the CUDA kernels (.cu, compiled by nvcc) and the C++ that registers
// them (.cpp): plain types only, so nvcc never parses Kiln's or fmt's headers. Every launch
// is asynchronous on `stream` and returns the launch's error code (0 for success).

#include <cstdint>

namespace kiln::cuda::launch {

inline constexpr int kMaxRank = 8;

// Dtype codes: kiln::DType's values (boolean, u8, i32, i64, f32, f64).
enum Dtype : int { kBool = 0, kU8, kI32, kI64, kF32, kF64 };

// An elementwise iteration space: the output (dense, row-major) of `rank` dims, and for each
// of up to three inputs its element strides over those dims (0 where it broadcasts).
struct Strides {
  int rank = 0;
  int64_t shape[kMaxRank] = {};
  int64_t in[3][kMaxRank] = {};
};

enum class Unary : int {
  neg,
  abs,
  square,
  sign,
  relu,
  exp,
  log,
  log1p,
  expm1,
  sqrt,
  rsqrt,
  tanh,
  sigmoid,
  erf,
  sin,
  cos,
  floor,
  ceil,
  round,
  logical_not,
  copy,
};
enum class Binary : int {
  add,
  sub,
  mul,
  div,        // integers: truncating, as C++ (the caller rejects zero divisors first)
  floor_div,  // rounds toward negative infinity (floats: floor(a / b))
  pow,
  maximum,
  minimum,
  equal,
  not_equal,
  less,
  less_equal,
  greater,
  greater_equal,
  logical_and,
  logical_or,
};

int unary(Unary op, int dtype, void* out, const void* x, const Strides& s, int64_t n, void* stream);
// Comparisons and logical ops write bool; the others the inputs' dtype.
int binary(Binary op, int dtype, void* out, const void* a, const void* b, const Strides& s,
           int64_t n, void* stream);
int select(int dtype, void* out, const void* cond, const void* a, const void* b, const Strides& s,
           int64_t n, void* stream);
int cast(int from, int to, void* out, const void* x, const Strides& s, int64_t n, void* stream);
// Fills n elements with `value` converted to dtype.
int fill(int dtype, void* out, double value, int64_t n, void* stream);

// One Adam step over n dense elements (f32 or f64), as backends/cpu/optim.cpp computes it.
int adam(int dtype, const void* var, const void* m, const void* v, const void* g, void* var_out,
         void* m_out, void* v_out, int64_t n, double lr, double beta1, double beta2, double eps,
         void* stream);

// Reductions over a dense input seen as [outer, reduced, inner]: out[o, i] = op over r.
enum class Reduce : int { sum, max, min, prod };
int reduce(Reduce op, int dtype, void* out, const void* x, int64_t outer, int64_t reduced,
           int64_t inner, void* stream);

// ---- random.cu: the draws of backends/cpu/random.cpp, bit for bit. Element i of a draw is
// lane i % per_block of Philox 4x32-10 block (offset + i / per_block) under key `seed`; one
// thread per block. The float arithmetic is rounded step by step, as the CPU's (compiled
// without contraction into fused multiply-adds).
struct Philox {
  uint64_t seed = 0;
  uint64_t offset = 0;
};
// f32 or f64 in [lo, hi): lo + (hi - lo) * u, and `top` (the largest value below hi) where
// that rounds up to hi.
int rng_uniform(int dtype, void* out, int64_t n, Philox p, double lo, double hi, double top,
                void* stream);
// i32 or i64: lo + (64 random bits) % range.
int rng_randint(int dtype, void* out, int64_t n, Philox p, int64_t lo, uint64_t range,
                void* stream);
// bool: a 32-bit lane below `threshold` (p * 2^32).
int rng_bernoulli(void* out, int64_t n, Philox p, uint64_t threshold, void* stream);

}  // namespace kiln::cuda::launch
