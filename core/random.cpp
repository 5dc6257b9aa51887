// Philox 4x32-10, the global generator state, and the random-draw primitives (rng_uniform,
// rng_normal, rng_randint, rng_bernoulli). The CPU kernels are in backends/cpu/random.cpp.

#include <kiln/core/random.h>

#include <cmath>
#include <mutex>

#include <kiln/core/dispatch.h>
#include <kiln/core/registry.h>

namespace kiln {

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> ctr, uint64_t key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kM0) * ctr[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * ctr[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    ctr = {hi1 ^ ctr[1] ^ k0, lo1, hi0 ^ ctr[3] ^ k1, lo0};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

namespace random {
namespace {
std::mutex& state_mutex() {
  static std::mutex m;
  return m;
}
State& global_state() {
  static State s;
  return s;
}
}  // namespace

void seed(uint64_t s) {
  std::lock_guard<std::mutex> lock(state_mutex());
  global_state() = State{s, 0};
}

State state() {
  std::lock_guard<std::mutex> lock(state_mutex());
  return global_state();
}

void set_state(State s) {
  std::lock_guard<std::mutex> lock(state_mutex());
  global_state() = s;
}

State reserve(uint64_t blocks) {
  std::lock_guard<std::mutex> lock(state_mutex());
  const State first = global_state();
  global_state().offset += blocks;
  return first;
}

uint64_t advance(uint64_t blocks) {
  std::lock_guard<std::mutex> lock(state_mutex());
  const uint64_t first = global_state().offset;
  global_state().offset += blocks;
  return first;
}

namespace {

// Values each 128-bit Philox block yields for a draw of `op` with `dtype`; the CPU kernels
// use the same layout.
int64_t values_per_block(const std::string& op, DType dtype) {
  if (op == "rng_randint") return 2;  // 64 bits per value
  if (dtype == DType::f64) return 2;  // 53 bits per value (normal: 2 uniforms -> 2 values)
  return 4;
}

void check_shape(const char* op, const std::vector<int64_t>& dims) {
  for (int64_t d : dims)
    KILN_CHECK(d != -1,
               "{}: shape {} has an unknown dim ([{}]); random draws need a known shape (use "
               "zeros_like/ones_like for shapes read at run time)",
               op, Shape(dims).str(), fmt::join(dims, ","));
  for (int64_t d : dims)
    KILN_CHECK(d >= 0, "{}: negative dim in shape [{}]", op, fmt::join(dims, ","));
}

std::vector<TensorType> infer_uniform(const OpDef&, std::span<const TensorType>, const Attrs& a) {
  const auto& dims = a.ints("shape");
  check_shape("uniform", dims);
  const DType dt = a.dtype("dtype");
  KILN_CHECK(is_floating(dt), "uniform: dtype must be f32 or f64, got {}", name(dt));
  const double lo = a.f("lo"), hi = a.f("hi");
  KILN_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
             "uniform: need finite lo < hi, got lo={} hi={}", lo, hi);
  return {TensorType{dt, Shape(dims)}};
}

std::vector<TensorType> infer_normal(const OpDef&, std::span<const TensorType>, const Attrs& a) {
  const auto& dims = a.ints("shape");
  check_shape("normal", dims);
  const DType dt = a.dtype("dtype");
  KILN_CHECK(is_floating(dt), "normal: dtype must be f32 or f64, got {}", name(dt));
  const double sd = a.f("stddev");
  KILN_CHECK(std::isfinite(a.f("mean")) && std::isfinite(sd) && sd >= 0,
             "normal: need a finite mean and stddev >= 0, got mean={} stddev={}", a.f("mean"), sd);
  return {TensorType{dt, Shape(dims)}};
}

std::vector<TensorType> infer_randint(const OpDef&, std::span<const TensorType>, const Attrs& a) {
  const auto& dims = a.ints("shape");
  check_shape("randint", dims);
  const DType dt = a.dtype("dtype");
  KILN_CHECK(dt == DType::i32 || dt == DType::i64, "randint: dtype must be i32 or i64, got {}",
             name(dt));
  const int64_t lo = a.i("lo"), hi = a.i("hi");
  KILN_CHECK(lo < hi, "randint: need lo < hi, got lo={} hi={}", lo, hi);
  if (dt == DType::i32)
    KILN_CHECK(lo >= INT32_MIN && hi - 1 <= INT32_MAX,
               "randint: range [{}, {}) does not fit dtype i32", lo, hi);
  return {TensorType{dt, Shape(dims)}};
}

std::vector<TensorType> infer_bernoulli(const OpDef&, std::span<const TensorType>, const Attrs& a) {
  const auto& dims = a.ints("shape");
  check_shape("bernoulli", dims);
  const double p = a.f("p");
  KILN_CHECK(p >= 0 && p <= 1, "bernoulli: p must be in [0, 1], got {}", p);
  return {TensorType{DType::boolean, Shape(dims)}};
}

constexpr uint32_t kRngFlags = kStateful | kCreation | kNotDifferentiable;

KILN_STATIC_INIT {
  registry()
      .mutable_op("rng_uniform")
      .set_num_inputs(0)
      .set_flags(kRngFlags)
      .set_infer(infer_uniform)
      .set_doc("Uniform floats in [lo, hi) from Philox 4x32-10 at (seed, offset).");
  registry()
      .mutable_op("rng_normal")
      .set_num_inputs(0)
      .set_flags(kRngFlags)
      .set_infer(infer_normal)
      .set_doc("Normal floats (Box-Muller) from Philox 4x32-10 at (seed, offset).");
  registry()
      .mutable_op("rng_randint")
      .set_num_inputs(0)
      .set_flags(kRngFlags)
      .set_infer(infer_randint)
      .set_doc("Integers uniform in [lo, hi) from Philox 4x32-10 at (seed, offset).");
  registry()
      .mutable_op("rng_bernoulli")
      .set_num_inputs(0)
      .set_flags(kRngFlags)
      .set_infer(infer_bernoulli)
      .set_doc("Booleans, true with probability p, from Philox 4x32-10 at (seed, offset).");
};

// One draw of primitive `name`: validates (shape, dtype and the distribution's `params`)
// before reserving counters, so a failed call leaves the generator's state alone, then
// dispatches with the reserved seed, offset and block count.
Tensor draw(const char* name, const Shape& shape, DType dtype, Attrs params) {
  const OpDef& op = registry().op(name);
  params.set("shape", shape.dims()).set("dtype", dtype);
  op.infer()(op, {}, params);
  const int64_t n = shape.numel();
  const int64_t per = values_per_block(name, dtype);
  const uint64_t blocks = n > 0 ? static_cast<uint64_t>((n + per - 1) / per) : 0;
  const State st = reserve(blocks);
  params.set("seed", static_cast<int64_t>(st.seed))
      .set("offset", static_cast<int64_t>(st.offset))
      .set("blocks", static_cast<int64_t>(blocks));
  return dispatch1(op, {}, params);
}

}  // namespace

Tensor uniform(const Shape& shape, double lo, double hi, DType dtype) {
  return draw("rng_uniform", shape, dtype, Attrs{{"lo", lo}, {"hi", hi}});
}

Tensor normal(const Shape& shape, double mean, double stddev, DType dtype) {
  return draw("rng_normal", shape, dtype, Attrs{{"mean", mean}, {"stddev", stddev}});
}

Tensor randint(const Shape& shape, int64_t lo, int64_t hi, DType dtype) {
  return draw("rng_randint", shape, dtype, Attrs{{"lo", lo}, {"hi", hi}});
}

Tensor bernoulli(const Shape& shape, double p) {
  return draw("rng_bernoulli", shape, DType::boolean, Attrs{{"p", p}});
}

}  // namespace random
}  // namespace kiln
