#pragma once

// The JIT's differential fuzzer, part 3: runs a program (jit_fuzz.h) through kiln::function
// twice, compiled by the JIT and on the reference interpreter, with the same inputs (a dynamic
// program is traced once against its input_signature and called with two batch sizes), and
// compares the results. `reduce` shrinks a failing program while it keeps failing; `report`
// prints what a defect report needs: the seed, the program and the optimized IR.
//
// Tolerance: floats agree within 1e-5 relative plus 1e-6 absolute, NaN matches NaN and an inf
// the same inf; integers and bools must be equal; dtypes and shapes too. A float mismatch is
// then judged against the program run in f64 (see `in_f64`): the JIT's 2e-7 polynomial exp,
// log, tanh and sigmoid, and its own order of a fused reduction, round differently, and
// cancellation can magnify that past any fixed tolerance.

#include <cmath>
#include <exception>
#include <functional>
#include <string>
#include <vector>

#include <kiln/jit/executable.h>

#include "jit_fuzz_gen.h"

namespace kiln::fuzz {

enum class Verdict {
  ok,
  mismatch,         // a defect: the results differ
  compiled_error,   // a defect: the compiled function raised where the interpreter did not
  reference_error,  // the interpreter raised: the program is not valid (a generator bug)
};

struct Outcome {
  Verdict verdict = Verdict::ok;
  std::string message;  // ok: "ill-conditioned" when only the f64 check explained it
  bool defect() const { return verdict == Verdict::mismatch || verdict == Verdict::compiled_error; }
};

inline constexpr double kRtol = 1e-5, kAtol = 1e-6;
// f32 against f64, relative to the largest magnitude in the result (see compare).
inline constexpr double kScaleRtol = 1e-4;

inline auto make_function(const Program& p, bool jit) {
  FunctionOptions o;
  o.name = fmt::format("fuzz{}", p.seed);
  o.jit_compile = jit;
  if (!p.batches.empty())
    for (const Input& in : p.inputs)
      o.input_signature.emplace_back(in.shape, in.dtype);
  return kiln::function(
      [p](const Tensor& a, const Tensor& b, const Tensor& c) {
        return apply(p, {a, b, c});
      },
      o);
}

// t rounded to f32 as the hardware rounds: beyond f32's range, to an inf.
inline double rounded_to_f32(double t) {
  constexpr double kHalfwayToInf = 0x1.ffffffp127;  // between FLT_MAX and 2^128
  if (std::isfinite(t) && std::abs(t) >= kHalfwayToInf) return std::copysign(INFINITY, t);
  return static_cast<float>(t);
}

// "" when `got` matches `want`, else what differs first. With `truth` (the interpreter's
// results for the program in f64, see `run`), a float element may also differ from a finite
// interpreted one by 8 times the interpreter's own largest error in that result, or (f32) from
// the f64 one by that plus 1e-4 of the result's largest f64 magnitude, and a bool or integer
// element where the interpreter's own result is not the f64 one; any element may equal the
// f64 one (rounded to f32 for an f32 result). Results marked in `order_dependent`
// (see `order_dependent`) may differ anywhere.
inline std::string compare(const std::vector<Tensor>& got, const std::vector<Tensor>& want,
                           const std::vector<Tensor>* truth = nullptr,
                           const std::vector<bool>* order_dependent = nullptr) {
  if (got.size() != want.size())
    return fmt::format("{} results, the interpreter gave {}", got.size(), want.size());
  for (size_t k = 0; k < got.size(); ++k) {
    const Tensor &g = got[k], &w = want[k];
    if (g.dtype() != w.dtype() || g.shape() != w.shape())
      return fmt::format("result {}: {}, the interpreter gave {}", k, g.type_str(), w.type_str());
    if (order_dependent && (*order_dependent)[k]) continue;
    const std::vector<double> gv = g.to_vector<double>(), wv = w.to_vector<double>();
    const std::vector<double> tv = truth ? (*truth)[k].to_vector<double>() : std::vector<double>{};
    const bool floating = is_floating(w.dtype());
    double err = 0;    // the interpreter's largest error against f64
    double scale = 0;  // the largest finite magnitude in the f64 result
    for (size_t i = 0; i < tv.size(); ++i) {
      if (std::isfinite(wv[i]) && std::isfinite(tv[i]))
        err = std::max(err, std::abs(wv[i] - tv[i]));
      if (std::isfinite(tv[i])) scale = std::max(scale, std::abs(tv[i]));
    }
    for (size_t i = 0; i < gv.size(); ++i) {
      const double a = gv[i], b = wv[i];
      const double tol = kAtol + kRtol * std::abs(b);
      bool same = std::isnan(b)                          ? std::isnan(a)
                  : !floating || std::isinf(b) || a == b ? a == b
                                                         : std::abs(a - b) <= tol;
      if (!same && truth) {
        // A compiled element equal to the f64 one (rounded to f32, for an f32 result) is
        // right whatever the interpreter gave. A dot product over -inf and a product that
        // overflows f32 only when rounded on its own is NaN without an FMA and -inf with one,
        // and a relu after it turns the NaN into 0; so is a sum whose f32 partial sums
        // overflow to infs of both signs in one order and to one inf in another, when f64
        // sums it to a value beyond f32's range.
        const double t = tv[i];
        same = a == t || (w.dtype() == f32 && a == rounded_to_f32(t)) ||
               (std::isnan(a) && std::isnan(t)) ||
               (floating && std::isfinite(a) && std::abs(a - t) <= kAtol + kRtol * std::abs(t));
        if (!same)
          same = floating ? std::isfinite(a) && std::isfinite(b) && std::abs(a - b) <= tol + 8 * err
                          : tv[i] != b;
        // One rounding that many terms share (a sum read by a whole row of a product) moves
        // the element by many of its ulps, past 8 times the interpreter's own error when that
        // happened to be small: within 1e-4 of the result's scale of the f64 value passes.
        if (!same && w.dtype() == f32 && std::isfinite(a) && std::isfinite(t))
          same = std::abs(a - t) <= 8 * err + kScaleRtol * scale;
      }
      if (!same)
        return fmt::format("result {} ({}), element {}: compiled {}, interpreted {}{}", k,
                           w.type_str(), i, a, b, truth ? fmt::format(" (in f64: {})", tv[i]) : "");
    }
  }
  return "";
}

// The program with f32 replaced by f64 (constants draw the same values). Its interpreted
// results are the "truth" a float mismatch is judged against: a compiled result as close to
// it as the interpreter's own (cancellation after the JIT's 2e-7 polynomial exp/log/tanh/
// sigmoid, a reassociated sum, a softmax sum rounded near 1) is not a defect.
inline Program in_f64(const Program& p) {
  Program q = p;
  for (Input& in : q.inputs)
    if (in.dtype == f32) in.dtype = f64;
  for (Step& s : q.steps)
    if (s.dtype == f32) s.dtype = f64;
  return q;
}

// Per result of `p`: whether it is computed from a value marked in `dep` (indexed by value
// number: the inputs, then the steps).
inline std::vector<bool> results_depending_on(const Program& p, std::vector<bool> dep) {
  const size_t ni = p.inputs.size();
  for (size_t i = 0; i < p.steps.size(); ++i)
    for (int a : p.steps[i].args)
      if (dep[static_cast<size_t>(a)]) dep[ni + i] = true;
  std::vector<bool> out;
  for (int o : p.outputs)
    out.push_back(dep[static_cast<size_t>(o)]);
  return out;
}

// Which results of `p` may depend on the order of a sum on these inputs. A sum (matmul, sum,
// mean) of f32 values whose finite terms add up beyond f32's range in magnitude overflows in
// some order of its partial sums and not in another, or in a product rounded on its own and
// not inside an FMA: 2.9e38 + 1.8e38 + -inf is NaN and 2.9e38 + -inf + 1.8e38 is -inf; a
// product whose terms overflow to infs of both signs (-3e38 weights) is NaN without an FMA
// and either inf with one, and a relu, sigmoid or comparison after it turns that into 0, 1 or
// a bool. The interpreter and the compiled function sum in different orders (oneDNN's kernels
// for a transposed view and for a folded constant, a fused reduction), so every value computed
// from such a sum is ill-conditioned; the others are still checked.
inline std::vector<bool> order_dependent(const Program& p, const std::vector<Tensor>& in) {
  const size_t ni = p.inputs.size();
  std::vector<bool> dep(ni + p.steps.size(), false);
  Program q = p;
  q.outputs.clear();
  std::vector<size_t> sums;
  for (size_t i = 0; i < p.steps.size(); ++i) {
    const Step& st = p.steps[i];
    if (st.dtype != f32 || (st.op != Op::matmul && st.op != Op::sum && st.op != Op::mean)) continue;
    sums.push_back(i);
    q.outputs.insert(q.outputs.end(), st.args.begin(), st.args.end());
  }
  if (!sums.empty()) {
    const std::vector<Tensor> args = fuzz::apply(q, in);  // eager: the interpreter's own values
    auto magnitude = [](const Tensor& t) {                // |t| in f64, with NaN and inf as 0
      const Tensor m = kiln::abs(t.to(f64));
      return where(less(m, full_like(m, INFINITY)), m, 0.0);
    };
    size_t k = 0;
    for (size_t i : sums) {
      const Step& st = p.steps[i];
      const Tensor bound = st.op == Op::matmul ? matmul(magnitude(args[k]), magnitude(args[k + 1]))
                                               : sum(magnitude(args[k]), st.ints, st.keepdims);
      k += st.args.size();
      dep[ni + i] = bound.numel() > 0 && kiln::max(bound).item<double>() >= 0x1.fffffep127;
    }
  }
  return results_depending_on(p, std::move(dep));
}

// Which results of `p` depend on a float comparison that is a near tie on these inputs: two
// different values whose f64 elements are within the float tolerance of each other somewhere.
// Such a comparison turns a rounding into a different bool. Seed 1795756271152 compares x with
// log_softmax(x) over columns that are already log-probabilities, the same numbers by two
// roads: the interpreter rounded the column's log-sum-exp to 0, the compiled one to 1 ulp off
// (its exp is within 2e-7), and equal() went from 1 to 0. A comparison of a value with itself
// is never a near tie, and the other results are still checked.
inline std::vector<bool> near_ties(const Program& p, const std::vector<Tensor>& in) {
  const size_t ni = p.inputs.size();
  std::vector<bool> dep(ni + p.steps.size(), false);
  auto value_dtype = [&](int v) {
    return v < static_cast<int>(ni) ? p.inputs[static_cast<size_t>(v)].dtype
                                    : p.steps[static_cast<size_t>(v) - ni].dtype;
  };
  Program q = in_f64(p);
  q.outputs.clear();
  std::vector<size_t> ties;
  for (size_t i = 0; i < p.steps.size(); ++i) {
    const Step& st = p.steps[i];
    const bool compares = st.op == Op::less || st.op == Op::greater || st.op == Op::equal ||
                          st.op == Op::not_equal || st.op == Op::less_equal;
    if (!compares || st.args.size() != 2 || st.args[0] == st.args[1] ||
        !is_floating(value_dtype(st.args[0])))
      continue;
    ties.push_back(i);
    q.outputs.insert(q.outputs.end(), st.args.begin(), st.args.end());
  }
  if (!ties.empty()) {
    std::vector<Tensor> in64;
    for (const Tensor& t : in)
      in64.push_back(t.dtype() == f32 ? t.to(f64) : t);
    const std::vector<Tensor> args = fuzz::apply(q, in64);
    for (size_t k = 0; k < ties.size(); ++k) {
      const Tensor x = args[2 * k].to(f64), y = args[2 * k + 1].to(f64);
      const Tensor bound = kAtol + kRtol * maximum(kiln::abs(x), kiln::abs(y));
      const Tensor near = less_equal(kiln::abs(x - y), bound);
      dep[ni + ties[k]] = near.numel() > 0 && kiln::max(near.to(f64)).item<double>() > 0;
    }
  }
  return results_depending_on(p, std::move(dep));
}

// Runs `p` compiled and interpreted on the same inputs. Throws GeneratorError when the
// generator's type inference was wrong.
inline Outcome run(const Program& p) {
  auto compiled = make_function(p, true);
  auto reference = make_function(p, false);
  const std::vector<int64_t> batches = p.batches.empty() ? std::vector<int64_t>{1} : p.batches;
  bool ill_conditioned = false;
  for (size_t call = 0; call < batches.size(); ++call) {
    const std::vector<Tensor> in = make_inputs(p, batches[call], call);
    std::vector<Tensor> want, got;
    try {
      want = reference(in[0], in[1], in[2]);
    } catch (const kiln::Error& e) {
      return {Verdict::reference_error, e.what()};
    }
    try {
      // Odd seeds run every flat elementwise kernel through its streaming entry.
      jit::set_stream_threshold(p.seed % 2 == 1 ? 0 : -1);
      struct Reset {
        ~Reset() { jit::set_stream_threshold(-1); }
      } reset;
      got = compiled(in[0], in[1], in[2]);
    } catch (const GeneratorError&) {
      throw;
    } catch (const std::exception& e) {
      return {Verdict::compiled_error, fmt::format("call {}: {}", call, e.what())};
    }
    std::string diff = compare(got, want);
    if (!diff.empty()) {
      // The f64 truth also serves programs with NaN/inf inputs: where f32 overflows and f64
      // does not, the interpreter's element is not finite and does not count in its error.
      // A sum (matmul, sum, mean) near f32's range may overflow in one order and not in
      // another, and a comparison of two nearly equal floats may go either way: what is
      // computed from them is not compared.
      std::vector<Tensor> in64;
      for (const Tensor& t : in)
        in64.push_back(t.dtype() == f32 ? t.to(f64) : t);
      const std::vector<Tensor> truth = make_function(in_f64(p), false)(in64[0], in64[1], in64[2]);
      std::vector<bool> order = order_dependent(p, in);
      const std::vector<bool> tied = near_ties(p, in);
      for (size_t k = 0; k < order.size(); ++k)
        order[k] = order[k] || tied[k];
      diff = compare(got, want, &truth, &order);
      if (diff.empty()) {
        ill_conditioned = true;
        continue;
      }
      if (!p.batches.empty()) diff = fmt::format("batch {}: {}", batches[call], diff);
      return {Verdict::mismatch, diff};
    }
  }
  return {Verdict::ok, ill_conditioned ? "ill-conditioned" : ""};
}

// Shrinks a failing program while `fails` holds: keeps one output, then repeatedly bypasses a
// step (its uses read an operand of the same type instead) or turns it into a constant.
inline Program reduce(Program p, const std::function<bool(const Program&)>& fails) {
  p = prune(p);
  const size_t ni = p.inputs.size();
  for (int o : p.outputs) {
    Program q = p;
    q.outputs = {o};
    q = prune(q);
    if (p.outputs.size() > 1 && fails(q)) {
      p = q;
      break;
    }
  }
  auto replace_uses = [&](Program q, int from, int to) {
    for (Step& s : q.steps)
      for (int& a : s.args)
        if (a == from) a = to;
    for (int& o : q.outputs)
      if (o == from) o = to;
    return prune(q);
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t i = p.steps.size(); i-- > 0 && !changed;) {
      const Step& s = p.steps[i];
      const int self = static_cast<int>(ni + i);
      std::vector<Program> tries;
      for (int a : s.args) {
        const Shape& sa = a < static_cast<int>(ni) ? p.inputs[static_cast<size_t>(a)].shape
                                                   : p.steps[static_cast<size_t>(a) - ni].shape;
        const DType da = a < static_cast<int>(ni) ? p.inputs[static_cast<size_t>(a)].dtype
                                                  : p.steps[static_cast<size_t>(a) - ni].dtype;
        if (sa == s.shape && da == s.dtype) tries.push_back(replace_uses(p, self, a));
      }
      const bool known =
          std::all_of(s.shape.begin(), s.shape.end(), [](int64_t d) { return d >= 0; });
      if (s.op != Op::constant && known) {
        Program q = p;
        q.steps[i] = {Op::constant, {}, {static_cast<int64_t>(i) + 1}, false, 0, s.dtype, s.shape};
        tries.push_back(prune(q));
      }
      for (Program& q : tries) {
        if (fails(q)) {
          p = std::move(q);
          changed = true;
          break;
        }
      }
    }
  }
  return p;
}

// A defect's report: the seed, the program, the verdict and the compiled function's IR.
inline std::string report(const Program& p, const Outcome& o) {
  std::string ir;
  ConcreteFunction cf;
  try {
    auto compiled = make_function(p, true);
    const std::vector<Tensor> in = make_inputs(p, p.batches.empty() ? 1 : p.batches[0], 0);
    cf = compiled.get_concrete_function(in[0], in[1], in[2]);
    ir = cf.ir(IRStage::optimized);
  } catch (const std::exception& e) {
    // The compile raised: show the traced graph instead.
    ir = fmt::format("(none: {}); traced IR:\n{}", e.what(),
                     cf.defined() ? cf.ir(IRStage::traced) : std::string());
  }
  // Big constants print as one long line: keep their start.
  std::string shown;
  for (size_t pos = 0; pos < ir.size();) {
    size_t end = ir.find('\n', pos);
    if (end == std::string::npos) end = ir.size();
    const std::string line = ir.substr(pos, end - pos);
    shown += line.size() > 240 ? line.substr(0, 240) + " ..." : line;
    shown += "\n";
    pos = end + 1;
  }
  ir = shown;
  return fmt::format("seed {}: {}\n{}optimized IR:\n{}", p.seed,
                     o.verdict == Verdict::mismatch ? o.message : "compiled error: " + o.message,
                     to_string(p), ir);
}

// A defect found by `run`, reduced, as report text (the original program first).
inline std::string reduce_and_report(const Program& p, const Outcome& o) {
  const Program small = reduce(p, [&](const Program& q) {
    try {
      const Outcome r = run(q);
      return r.verdict == o.verdict;
    } catch (const std::exception&) {
      return false;
    }
  });
  const Outcome again = run(small);
  return fmt::format("{}\nreduced to:\n{}", report(p, o), report(small, again));
}

}  // namespace kiln::fuzz
