// Philox 4x32-10, the global generator state, and the random-draw primitives (rng_uniform,
// rng_normal, rng_randint, rng_bernoulli). The CPU kernels are in backends/cpu/random.cpp.
//
// Each draw also has a _like primitive (rng_uniform_like, ...) with one input whose shape it
// takes at run time, for tensors with unknown dims in a trace. Its counters depend on that
// shape, so it carries "blocks" = -1 and redraw() reserves them when the graph runs.

#include <kiln/core/random.h>

#include <algorithm>
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

bool is_randint(const std::string& op) {
  return op == "rng_randint" || op == "rng_randint_like";
}

// Values each 128-bit Philox block yields for a draw of `op` with `dtype`; the CPU kernels
// use the same layout.
int64_t values_per_block(const std::string& op, DType dtype) {
  if (is_randint(op)) return 2;       // 64 bits per value
  if (dtype == DType::f64) return 2;  // 53 bits per value (normal: 2 uniforms -> 2 values)
  return 4;
}

uint64_t blocks_for(const std::string& op, DType dtype, int64_t n) {
  const int64_t per = values_per_block(op, dtype);
  return n > 0 ? static_cast<uint64_t>((n + per - 1) / per) : 0;
}

void check_shape(const char* op, const std::vector<int64_t>& dims) {
  for (int64_t d : dims)
    KILN_CHECK(d != -1,
               "{}: shape {} has an unknown dim ([{}]); random draws need a known shape (use "
               "random::{}_like of a tensor of that shape)",
               op, Shape(dims).str(), fmt::join(dims, ","), op);
  for (int64_t d : dims)
    KILN_CHECK(d >= 0, "{}: negative dim in shape [{}]", op, fmt::join(dims, ","));
}

// Each distribution's checks of its attributes; returns the output dtype.
DType uniform_params(const Attrs& a) {
  const DType dt = a.dtype("dtype");
  KILN_CHECK(is_floating(dt), "uniform: dtype must be f32 or f64, got {}", name(dt));
  const double lo = a.f("lo"), hi = a.f("hi");
  KILN_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
             "uniform: need finite lo < hi, got lo={} hi={}", lo, hi);
  return dt;
}

DType normal_params(const Attrs& a) {
  const DType dt = a.dtype("dtype");
  KILN_CHECK(is_floating(dt), "normal: dtype must be f32 or f64, got {}", name(dt));
  const double sd = a.f("stddev");
  KILN_CHECK(std::isfinite(a.f("mean")) && std::isfinite(sd) && sd >= 0,
             "normal: need a finite mean and stddev >= 0, got mean={} stddev={}", a.f("mean"), sd);
  return dt;
}

DType randint_params(const Attrs& a) {
  const DType dt = a.dtype("dtype");
  KILN_CHECK(dt == DType::i32 || dt == DType::i64, "randint: dtype must be i32 or i64, got {}",
             name(dt));
  const int64_t lo = a.i("lo"), hi = a.i("hi");
  KILN_CHECK(lo < hi, "randint: need lo < hi, got lo={} hi={}", lo, hi);
  if (dt == DType::i32)
    KILN_CHECK(lo >= INT32_MIN && hi - 1 <= INT32_MAX,
               "randint: range [{}, {}) does not fit dtype i32", lo, hi);
  return dt;
}

DType bernoulli_params(const Attrs& a) {
  const double p = a.f("p");
  KILN_CHECK(p >= 0 && p <= 1, "bernoulli: p must be in [0, 1], got {}", p);
  return DType::boolean;
}

using ParamsFn = DType (*)(const Attrs&);

// One distribution: the sized primitive (shape attr) and its _like variant (the shape of
// input 0, read at run time), which runs the sized primitive's kernel.
struct Distribution {
  const char* name;
  const char* sized;
  const char* like;
  ParamsFn params;
  const char* doc;
};

constexpr Distribution kDistributions[] = {
    {"uniform", "rng_uniform", "rng_uniform_like", uniform_params,
     "Uniform floats in [lo, hi) from Philox 4x32-10 at (seed, offset)."},
    {"normal", "rng_normal", "rng_normal_like", normal_params,
     "Normal floats (Box-Muller) from Philox 4x32-10 at (seed, offset)."},
    {"randint", "rng_randint", "rng_randint_like", randint_params,
     "Integers uniform in [lo, hi) from Philox 4x32-10 at (seed, offset)."},
    {"bernoulli", "rng_bernoulli", "rng_bernoulli_like", bernoulli_params,
     "Booleans, true with probability p, from Philox 4x32-10 at (seed, offset)."},
};

template <size_t D>
std::vector<TensorType> infer_sized(const OpDef&, std::span<const TensorType>, const Attrs& a) {
  const Distribution& dist = kDistributions[D];
  const auto& dims = a.ints("shape");
  check_shape(dist.name, dims);
  return {TensorType{dist.params(a), Shape(dims)}};
}

template <size_t D>
std::vector<TensorType> infer_like(const OpDef&, std::span<const TensorType> in, const Attrs& a) {
  return {TensorType{kDistributions[D].params(a), in[0].shape}};
}

// A _like draw runs its device's sized kernel with the concrete shape inference gave it (the
// kernels read the shape from `out` and the distribution from the attributes).
template <size_t D>
std::vector<Tensor> like_kernel(std::span<const Tensor> in, const Attrs& a,
                                std::span<const TensorType> out) {
  static const OpDef& sized = registry().op(kDistributions[D].sized);
  const Device device = in[0].device();
  if (device.is_cpu()) return sized.kernel(DeviceType::cpu)({}, a, out);
  if (KernelFn k = sized.kernel(device.type)) {
    Attrs on = a;  // a sized draw has no input to say where it runs
    on.set("device", static_cast<int64_t>(device.index));
    return k({}, on, out);
  }
  // A device without a kernel of its own: drawn on the host with the same counters, then
  // copied, so the values are the CPU's bit for bit.
  std::vector<Tensor> host = sized.kernel(DeviceType::cpu)({}, a, out);
  for (Tensor& t : host)
    t = t.to(device);
  return host;
}

constexpr uint32_t kRngFlags = kStateful | kCreation | kNotDifferentiable;

template <size_t D>
void register_distribution() {
  const Distribution& dist = kDistributions[D];
  registry()
      .mutable_op(dist.sized)
      .set_num_inputs(0)
      .set_flags(kRngFlags)
      .set_infer(infer_sized<D>)
      .set_doc(dist.doc);
  auto& like = registry()
                   .mutable_op(dist.like)
                   .set_num_inputs(1)
                   .set_flags(kStateful | kNotDifferentiable)
                   .set_infer(infer_like<D>)
                   .set_doc(fmt::format("{} Shaped like the input, read at run time.", dist.doc));
  for (int d = 0; d < kNumDeviceTypes; ++d)
    like.set_kernel(static_cast<DeviceType>(d), like_kernel<D>);
}

KILN_STATIC_INIT {
  register_distribution<0>();
  register_distribution<1>();
  register_distribution<2>();
  register_distribution<3>();
};

// One draw of primitive `name`: validates (shape, dtype and the distribution's `params`)
// before reserving counters, so a failed call leaves the generator's state alone, then
// dispatches with the reserved seed, offset and block count.
Tensor draw(const char* name, const Shape& shape, DType dtype, Attrs params) {
  const OpDef& op = registry().op(name);
  params.set("shape", shape.dims()).set("dtype", dtype);
  op.infer()(op, {}, params);
  const uint64_t blocks = blocks_for(name, dtype, shape.numel());
  const State st = reserve(blocks);
  params.set("seed", static_cast<int64_t>(st.seed))
      .set("offset", static_cast<int64_t>(st.offset))
      .set("blocks", static_cast<int64_t>(blocks));
  return dispatch1(op, {}, params);
}

// A draw shaped like `x`, on x's device. With a fully known shape on the CPU or in a trace it
// is the sized draw (so eager code and traces of known shapes are unchanged); for a tensor on
// another device, the _like primitive with counters reserved now, which runs on that device;
// with unknown dims (only inside a trace), the _like primitive whose counters are reserved
// when the graph runs: its "blocks" is -1 and "seed"/"offset" hold the state at trace time
// (see redraw()).
Tensor draw_like(size_t d, const Tensor& x, DType dtype, Attrs params) {
  const Distribution& dist = kDistributions[d];
  const auto& dims = x.shape().dims();
  const bool known = std::all_of(dims.begin(), dims.end(), [](int64_t n) { return n >= 0; });
  if (known && (x.is_symbolic() || x.device().is_cpu()))
    return draw(dist.sized, x.shape(), dtype, std::move(params));
  const OpDef& op = registry().op(dist.like);
  params.set("dtype", dtype);
  if (known) {
    // A tensor on a device: the _like draw runs there (its kernel, or the CPU's and a copy),
    // with counters reserved now, as draw() does.
    op.infer()(op, std::vector<TensorType>{x.type()}, params);
    const uint64_t blocks = blocks_for(dist.like, dtype, x.numel());
    const State st = reserve(blocks);
    params.set("seed", static_cast<int64_t>(st.seed))
        .set("offset", static_cast<int64_t>(st.offset))
        .set("blocks", static_cast<int64_t>(blocks));
    return dispatch1(op, {x}, params);
  }
  const State st = state();
  params.set("seed", static_cast<int64_t>(st.seed))
      .set("offset", static_cast<int64_t>(st.offset))
      .set("blocks", int64_t{-1});
  return dispatch1(op, {x}, params);
}

}  // namespace

Attrs redraw(const OpDef& op, std::span<const Tensor> inputs, Attrs attrs) {
  int64_t blocks = attrs.i("blocks");
  if (blocks < 0) {
    std::vector<TensorType> types;
    for (const Tensor& t : inputs)
      types.push_back(TensorType{t.dtype(), t.shape()});
    const TensorType out = op.infer()(op, types, attrs)[0];
    const auto& dims = out.shape.dims();
    if (std::all_of(dims.begin(), dims.end(), [](int64_t n) { return n >= 0; }))
      blocks = static_cast<int64_t>(blocks_for(op.name(), out.dtype, out.shape.numel()));
  }
  const State st = reserve(blocks < 0 ? 0 : static_cast<uint64_t>(blocks));
  return attrs.set("seed", static_cast<int64_t>(st.seed))
      .set("offset", static_cast<int64_t>(st.offset))
      .set("blocks", blocks);
}

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

Tensor uniform_like(const Tensor& x, double lo, double hi) {
  return draw_like(0, x, x.dtype(), Attrs{{"lo", lo}, {"hi", hi}});
}

Tensor normal_like(const Tensor& x, double mean, double stddev) {
  return draw_like(1, x, x.dtype(), Attrs{{"mean", mean}, {"stddev", stddev}});
}

Tensor randint_like(const Tensor& x, int64_t lo, int64_t hi) {
  return draw_like(2, x, x.dtype(), Attrs{{"lo", lo}, {"hi", hi}});
}

Tensor bernoulli_like(const Tensor& x, double p) {
  return draw_like(3, x, DType::boolean, Attrs{{"p", p}});
}

}  // namespace random
}  // namespace kiln
