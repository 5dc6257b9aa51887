#pragma once

// The JIT's differential fuzzer, part 1: random well-typed programs as data. A Program is a
// list of steps over a pool of values (the inputs first, then one value per step), chosen from
// a seed: elementwise math with broadcasting (shapes like [a,b] against [b], [a,1], [1,b], []),
// reductions over random axes, softmax, matmul, reshape, transpose, slice, expand_dims,
// squeeze, broadcast_to, concat, dtype casts, comparisons and selects, and exact i32/i64 math.
// `apply` runs a program with the public ops, so tracing it under kiln::function gives the
// graph the JIT compiles; jit_fuzz_check.h runs it compiled and interpreted and compares.
//
// The generator infers every result's dtype and shape itself (-1 is the dynamic batch of a
// program with an input_signature, and means the same run-time size wherever it appears);
// `apply` checks its inference against the traced shapes, so a generator bug shows as such.
// In normal mode it also tracks a bound on each value's magnitude and avoids ops that could
// overflow (values stay finite, so float differences mean something); special mode feeds
// NaN, inf and -0.0 and lets anything happen.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <kiln/kiln.h>

namespace kiln::fuzz {

enum class Op : uint8_t {
  constant,  // a captured tensor: ints[0] is its seed
  // float unary (log_abs1 = log(|x|+1), sqrt_abs = sqrt(|x|))
  neg,
  abs,
  exp,
  tanh,
  sigmoid,
  log_abs1,
  sqrt_abs,
  square,
  relu,
  sin,
  erf,
  floor,
  round,
  // binary with broadcasting (safe_div = a / (|b|+1))
  add,
  sub,
  mul,
  safe_div,
  maximum,
  minimum,
  // with a weak scalar (`scalar`)
  add_scalar,
  mul_scalar,
  rsub_scalar,
  less,
  greater,
  equal,
  not_equal,
  less_equal,  // -> bool
  logical_and,
  logical_or,
  logical_not,
  select,
  cast,  // to `dtype`
  sum,
  max,
  min,
  mean,  // ints = axes ({} = all), keepdims
  softmax,
  log_softmax,  // ints[0] = axis
  matmul,
  reshape,
  transpose,
  slice,  // reshape: ints = shape; transpose: perm
  expand_dims,
  squeeze,
  broadcast_to,
  concat,  // slice: axis, start, stop, step
};

inline const char* op_name(Op op) {
  static const char* const names[] = {
      "constant",    "neg",         "abs",         "exp",          "tanh",        "sigmoid",
      "log_abs1",    "sqrt_abs",    "square",      "relu",         "sin",         "erf",
      "floor",       "round",       "add",         "sub",          "mul",         "safe_div",
      "maximum",     "minimum",     "add_scalar",  "mul_scalar",   "rsub_scalar", "less",
      "greater",     "equal",       "not_equal",   "less_equal",   "logical_and", "logical_or",
      "logical_not", "select",      "cast",        "sum",          "max",         "min",
      "mean",        "softmax",     "log_softmax", "matmul",       "reshape",     "transpose",
      "slice",       "expand_dims", "squeeze",     "broadcast_to", "concat"};
  return names[static_cast<size_t>(op)];
}

struct Step {
  Op op;
  std::vector<int> args;      // value numbers
  std::vector<int64_t> ints;  // axes, perm, shape, slice bounds, a constant's seed
  bool keepdims = false;
  double scalar = 0;
  DType dtype = f32;  // the result's
  Shape shape;        // the result's; -1 is the batch
};

struct Input {
  DType dtype;
  Shape shape;  // -1 is the batch
};

struct Program {
  uint64_t seed = 0;
  bool special = false;          // inputs hold NaN, inf and -0.0
  std::vector<int64_t> batches;  // run-time sizes of -1 (empty: the program is static)
  std::vector<Input> inputs;     // always three: the traced lambda takes three tensors
  std::vector<Step> steps;       // value inputs.size() + i is steps[i]'s result
  std::vector<int> outputs;
};

inline std::string type_str(DType d, const Shape& s) {
  std::string out = fmt::format("{}[", kiln::name(d));
  for (size_t i = 0; i < s.size(); ++i)
    out += fmt::format("{}{}", i ? "," : "", s[i] < 0 ? std::string("?") : std::to_string(s[i]));
  return out + "]";
}

inline std::string to_string(const Program& p) {
  std::string out = fmt::format("program seed={}{}", p.seed, p.special ? " special" : "");
  if (!p.batches.empty()) out += fmt::format(" batches=[{}]", fmt::join(p.batches, ","));
  out += "\n";
  for (size_t i = 0; i < p.inputs.size(); ++i)
    out += fmt::format("  %{}: {}\n", i, type_str(p.inputs[i].dtype, p.inputs[i].shape));
  for (size_t i = 0; i < p.steps.size(); ++i) {
    const Step& s = p.steps[i];
    std::vector<std::string> args;
    for (int a : s.args)
      args.push_back(fmt::format("%{}", a));
    std::string attrs;
    if (!s.ints.empty()) attrs += fmt::format(" ints=[{}]", fmt::join(s.ints, ","));
    if (s.keepdims) attrs += " keepdims";
    if (s.op == Op::add_scalar || s.op == Op::mul_scalar || s.op == Op::rsub_scalar)
      attrs += fmt::format(" scalar={}", s.scalar);
    out += fmt::format("  %{} = {}({}){} : {}\n", p.inputs.size() + i, op_name(s.op),
                       fmt::join(args, ", "), attrs, type_str(s.dtype, s.shape));
  }
  std::vector<std::string> outs;
  for (int o : p.outputs)
    outs.push_back(fmt::format("%{}", o));
  return out + fmt::format("  return {}\n", fmt::join(outs, ", "));
}

// Thrown by `apply` when a result's type is not the one the generator inferred.
struct GeneratorError : std::logic_error {
  using std::logic_error::logic_error;
};

// ---- running a program ---------------------------------------------------------------------

// Deterministic values for an input or a captured constant. Normal mode: floats in [-2, 2]
// (bounded away from the tiny), integers in [-4, 4], bools half true. Special mode adds NaN, +-inf,
// -0.0, 0.0 and big values to floats.
inline Tensor make_values(DType dtype, const Shape& shape, uint64_t seed, bool special) {
  std::mt19937_64 gen(seed);
  auto u = [&gen] { return -2 + 4 * static_cast<double>(gen() >> 11) * 0x1.0p-53; };
  std::vector<double> v(static_cast<size_t>(shape.numel()));
  const double specials[] = {std::numeric_limits<double>::quiet_NaN(),
                             std::numeric_limits<double>::infinity(),
                             -std::numeric_limits<double>::infinity(),
                             -0.0,
                             0.0,
                             1e30,
                             -3e38};
  for (double& e : v) {
    if (is_integral(dtype))
      e = static_cast<double>(static_cast<int64_t>(gen() % 9) - 4);
    else if (dtype == DType::boolean)
      e = static_cast<double>(gen() % 2);
    else if (special && gen() % 4 == 0)
      e = specials[gen() % std::size(specials)];
    else
      e = static_cast<float>(u());
  }
  // Converted with hooks hidden: inside a trace the value is one captured constant of its
  // dtype, not an f64 constant and a traced cast.
  const SuspendHooks concrete;
  return from_vector(v, shape).to(dtype);
}

inline Shape concrete(const Shape& s, int64_t batch) {
  Shape out = s;
  for (auto& d : out.dims())
    if (d < 0) d = batch;
  return out;
}

// Runs the program's steps with the public ops on `in` (three tensors, symbolic when traced)
// and returns its outputs. Throws GeneratorError when a result's type is not the one the
// generator inferred (a bug of the generator, or of shape inference).
inline std::vector<Tensor> apply(const Program& p, const std::vector<Tensor>& in) {
  std::vector<Tensor> v = in;
  const bool traced = !in.empty() && in[0].is_symbolic();
  for (size_t i = 0; i < p.steps.size(); ++i) {
    const Step& s = p.steps[i];
    auto a = [&](size_t k) -> const Tensor& { return v[static_cast<size_t>(s.args[k])]; };
    const std::vector<int64_t>& n = s.ints;
    Tensor r;
    switch (s.op) {
      case Op::constant:
        r = make_values(s.dtype, s.shape, static_cast<uint64_t>(n[0]), p.special);
        break;
      case Op::neg:
        r = neg(a(0));
        break;
      case Op::abs:
        r = kiln::abs(a(0));
        break;
      case Op::exp:
        r = kiln::exp(a(0));
        break;
      case Op::tanh:
        r = kiln::tanh(a(0));
        break;
      case Op::sigmoid:
        r = sigmoid(a(0));
        break;
      case Op::log_abs1:
        r = kiln::log(kiln::abs(a(0)) + 1);
        break;
      case Op::sqrt_abs:
        r = kiln::sqrt(kiln::abs(a(0)));
        break;
      case Op::square:
        r = square(a(0));
        break;
      case Op::relu:
        r = relu(a(0));
        break;
      case Op::sin:
        r = kiln::sin(a(0));
        break;
      case Op::erf:
        r = kiln::erf(a(0));
        break;
      case Op::floor:
        r = kiln::floor(a(0));
        break;
      case Op::round:
        r = kiln::round(a(0));
        break;
      case Op::add:
        r = add(a(0), a(1));
        break;
      case Op::sub:
        r = sub(a(0), a(1));
        break;
      case Op::mul:
        r = mul(a(0), a(1));
        break;
      case Op::safe_div:
        r = div(a(0), kiln::abs(a(1)) + 1);
        break;
      case Op::maximum:
        r = maximum(a(0), a(1));
        break;
      case Op::minimum:
        r = minimum(a(0), a(1));
        break;
      case Op::add_scalar:
        r = s.dtype == DType::i32   ? add(a(0), static_cast<int32_t>(s.scalar))
            : s.dtype == DType::i64 ? add(a(0), static_cast<int64_t>(s.scalar))
                                    : add(a(0), s.scalar);
        break;
      case Op::mul_scalar:
        r = s.dtype == DType::i32   ? mul(a(0), static_cast<int32_t>(s.scalar))
            : s.dtype == DType::i64 ? mul(a(0), static_cast<int64_t>(s.scalar))
                                    : mul(a(0), s.scalar);
        break;
      case Op::rsub_scalar:
        r = s.dtype == DType::i32   ? sub(static_cast<int32_t>(s.scalar), a(0))
            : s.dtype == DType::i64 ? sub(static_cast<int64_t>(s.scalar), a(0))
                                    : sub(s.scalar, a(0));
        break;
      case Op::less:
        r = less(a(0), a(1));
        break;
      case Op::greater:
        r = greater(a(0), a(1));
        break;
      case Op::equal:
        r = equal(a(0), a(1));
        break;
      case Op::not_equal:
        r = not_equal(a(0), a(1));
        break;
      case Op::less_equal:
        r = less_equal(a(0), a(1));
        break;
      case Op::logical_and:
        r = logical_and(a(0), a(1));
        break;
      case Op::logical_or:
        r = logical_or(a(0), a(1));
        break;
      case Op::logical_not:
        r = logical_not(a(0));
        break;
      case Op::select:
        r = where(a(0), a(1), a(2));
        break;
      case Op::cast:
        r = cast(a(0), s.dtype);
        break;
      case Op::sum:
        r = sum(a(0), n, s.keepdims);
        break;
      case Op::max:
        r = kiln::max(a(0), n, s.keepdims);
        break;
      case Op::min:
        r = kiln::min(a(0), n, s.keepdims);
        break;
      case Op::mean:
        r = mean(a(0), n, s.keepdims);
        break;
      case Op::softmax:
        r = softmax(a(0), n[0]);
        break;
      case Op::log_softmax:
        r = log_softmax(a(0), n[0]);
        break;
      case Op::matmul:
        r = matmul(a(0), a(1));
        break;
      case Op::reshape:
        r = reshape(a(0), Shape(n));
        break;
      case Op::transpose:
        r = transpose(a(0), n);
        break;
      case Op::slice:
        r = slice(a(0), n[0], n[1], n[2], n[3]);
        break;
      case Op::expand_dims:
        r = expand_dims(a(0), n[0]);
        break;
      case Op::squeeze:
        r = squeeze(a(0), n[0]);
        break;
      case Op::broadcast_to:
        r = broadcast_to(a(0), Shape(n));
        break;
      case Op::concat:
        r = concat({a(0), a(1)}, n[0]);
        break;
    }
    // Concrete runs (the eager check of a dynamic program) see the batch, traces see -1.
    const Shape want = traced ? s.shape : r.shape();
    if (r.dtype() != s.dtype || r.shape() != want)
      throw GeneratorError(fmt::format("jit_fuzz: step %{} ({}) gave {}, the generator said {}",
                                       p.inputs.size() + i, op_name(s.op),
                                       type_str(r.dtype(), r.shape()), type_str(s.dtype, s.shape)));
    v.push_back(r);
  }
  std::vector<Tensor> out;
  for (int o : p.outputs)
    out.push_back(v[static_cast<size_t>(o)]);
  return out;
}

// The inputs of one call: -1 dims become `batch`.
inline std::vector<Tensor> make_inputs(const Program& p, int64_t batch, uint64_t salt) {
  std::vector<Tensor> out;
  for (size_t i = 0; i < p.inputs.size(); ++i)
    out.push_back(make_values(p.inputs[i].dtype, concrete(p.inputs[i].shape, batch),
                              p.seed * 7919 + salt * 131 + i, p.special));
  return out;
}

// Keeps the steps `outputs` depend on and renumbers the values (inputs keep their numbers).
inline Program prune(const Program& p) {
  const size_t ni = p.inputs.size();
  std::vector<bool> live(ni + p.steps.size(), false);
  for (int o : p.outputs)
    live[static_cast<size_t>(o)] = true;
  for (size_t i = p.steps.size(); i-- > 0;)
    if (live[ni + i])
      for (int a : p.steps[i].args)
        live[static_cast<size_t>(a)] = true;
  std::vector<int> renum(live.size(), -1);
  for (size_t i = 0; i < ni; ++i)
    renum[i] = static_cast<int>(i);
  Program out = p;
  out.steps.clear();
  for (size_t i = 0; i < p.steps.size(); ++i) {
    if (!live[ni + i]) continue;
    Step s = p.steps[i];
    for (int& a : s.args)
      a = renum[static_cast<size_t>(a)];
    renum[ni + i] = static_cast<int>(ni + out.steps.size());
    out.steps.push_back(std::move(s));
  }
  for (int& o : out.outputs)
    o = renum[static_cast<size_t>(o)];
  return out;
}

}  // namespace kiln::fuzz
