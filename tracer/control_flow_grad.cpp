#include <kiln/tracer/control_flow_grad.h>

#include <set>
#include <unordered_set>

#include <kiln/autograd/tape.h>
#include <kiln/core/ops.h>
#include <kiln/tracer/control_flow.h>
#include <kiln/tracer/trace.h>

namespace kiln::tracer {
namespace {

// The tapes that record the current trace's ops.
std::vector<GradientTape*> tapes_here() {
  if (TraceContext::current() == nullptr) return {};
  return GradientTape::recording_here();
}

const ir::Node* first_side_effect(const ir::Graph& g) {
  for (const ir::Node& n : g.nodes) {
    const OpDef* def = registry().find(n.op);
    if (n.op == "assign_variable" ||
        (def != nullptr && def->has(kStateful) && n.attrs.has("blocks")))
      return &n;
    for (const auto& sub : n.subgraphs)
      if (const ir::Node* inner = first_side_effect(*sub)) return inner;
  }
  return nullptr;
}

// The backward pass re-runs a region: refuse what would not run the same way twice.
void check_rerunnable(const ir::Graph& g, const char* op) {
  const ir::Node* n = first_side_effect(g);
  KILN_CHECK(n == nullptr,
             "{}: gradients through a traced {} whose region {} ('{}') are not supported (the "
             "reverse pass re-runs the region); move it out of the {}, or differentiate "
             "outside the traced function",
             op, op, n->op == "assign_variable" ? "assigns a variable" : "draws random numbers",
             n->op, op);
}

void collect_variable_reads(const ir::Graph& g, std::set<int64_t>& out) {
  for (const ir::Node& n : g.nodes) {
    if (n.op == "read_variable") out.insert(n.attrs.i("var"));
    for (const auto& sub : n.subgraphs)
      collect_variable_reads(*sub, out);
  }
}

// What a set of regions reads from outside: floating captured tensors (once each) and
// floating variables, with a read of each variable in the current trace so that the tapes
// route the variable's gradient through this entry.
struct Sources {
  std::vector<Tensor> tensors;
  std::vector<Variable> variables;
  std::vector<Tensor> reads;
};

Sources sources_of(const std::vector<const Branch*>& regions) {
  Sources s;
  std::unordered_set<uint64_t> seen;
  std::set<int64_t> vars;
  for (const Branch* b : regions) {
    for (const Tensor& t : b->captures)
      if (is_floating(t.dtype()) && seen.insert(t.id()).second) s.tensors.push_back(t);
    collect_variable_reads(*b->graph, vars);
  }
  const std::vector<ir::VariableSlot>& slots = TraceContext::current()->variables();
  for (int64_t i : vars) {
    const ir::VariableSlot& slot = slots.at(static_cast<size_t>(i));
    if (!is_floating(slot.type.dtype)) continue;
    Variable v(slot.var);
    s.variables.push_back(v);
    s.reads.push_back(v.value());
  }
  return s;
}

std::vector<Tensor> concat_lists(std::vector<Tensor> a, const std::vector<Tensor>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Runs `region` on `args` under a fresh tape and returns the gradients of its results
// (weighted by `grads`, one per result; non-floating results are skipped) with respect to
// `watch` and then `vars`.
std::vector<Tensor> region_vjp(const ir::Graph& region, const std::vector<Tensor>& args,
                               size_t skip_results, const std::vector<Tensor>& watch,
                               const std::vector<Variable>& vars,
                               const std::vector<Tensor>& grads) {
  const std::vector<ir::VariableSlot> slots = TraceContext::current()->variables();
  GradientTape tape;
  for (const Tensor& t : watch)
    tape.watch(t);
  for (const Variable& v : vars)
    tape.watch(v);
  const std::vector<Tensor> ys = interpret(region, args, &slots);
  std::vector<Tensor> targets, weights;
  size_t g = 0;
  for (size_t k = skip_results; k < ys.size(); ++k) {
    if (!is_floating(ys[k].dtype())) continue;
    targets.push_back(ys[k]);
    weights.push_back(grads.at(g++));
  }
  return tape.gradient(targets, watch, vars, weights, Unconnected::zero);
}

}  // namespace

bool has_side_effects(const ir::Graph& g) {
  return first_side_effect(g) != nullptr;
}

bool gradients_recorded_here() {
  return !tapes_here().empty();
}

void record_cond_gradient(const Tensor& pred, const std::vector<Tensor>& outputs,
                          const Branch& then_branch, const Branch& else_branch) {
  const std::vector<GradientTape*> tapes = tapes_here();
  if (tapes.empty()) return;
  const Sources src = sources_of({&then_branch, &else_branch});
  std::vector<size_t> floating;
  for (size_t k = 0; k < outputs.size(); ++k)
    if (is_floating(outputs[k].dtype())) floating.push_back(k);
  auto vjp = [pred, src, floating, then_branch, else_branch](std::span<const Tensor> og) {
    check_rerunnable(*then_branch.graph, "cond");
    check_rerunnable(*else_branch.graph, "cond");
    std::vector<Tensor> grads;
    for (size_t k : floating)
      grads.push_back(og[k]);
    auto branch = [&](const Branch& b) {
      return region_vjp(*b.graph, b.captures, 0, src.tensors, src.variables, grads);
    };
    return detail::cond_impl(
        pred, [&] { return branch(then_branch); }, [&] { return branch(else_branch); });
  };
  const std::vector<Tensor> inputs = concat_lists(src.tensors, src.reads);
  for (GradientTape* t : tapes)
    t->record_closure(inputs, outputs, vjp);
}

void record_while_gradient(const std::vector<Tensor>& init, const std::vector<Tensor>& outputs,
                           const Tensor& trips, const Branch& body) {
  const std::vector<GradientTape*> tapes = tapes_here();
  if (tapes.empty()) return;
  const Sources src = sources_of({&body});
  std::vector<size_t> floating;  // the floating loop variables
  std::vector<Tensor> float_init;
  for (size_t k = 0; k < init.size(); ++k)
    if (is_floating(init[k].dtype())) {
      floating.push_back(k);
      float_init.push_back(init[k]);
    }
  const size_t nf = floating.size(), nx = src.tensors.size(), nv = src.variables.size();
  auto vjp = [=](std::span<const Tensor> og) {
    check_rerunnable(*body.graph, "while_loop");
    const std::vector<ir::VariableSlot> slots = TraceContext::current()->variables();
    // Reverse loop state: [k, d(vars_k) for floating vars..., d(captures)..., d(variables)...]
    std::vector<Tensor> state{trips};
    for (size_t k : floating)
      state.push_back(og[k]);
    for (const Tensor& x : src.tensors)
      state.push_back(zeros_like(x));
    for (const Tensor& r : src.reads)
      state.push_back(zeros_like(r));
    auto step = [&](const std::vector<Tensor>& s) {
      const Tensor k = sub(s[0], 1);
      // The loop variables entering iteration k, recomputed from the initial ones.
      std::vector<Tensor> replay =
          while_loop([&](const std::vector<Tensor>& u) { return less(u[0], k); },
                     [&](const std::vector<Tensor>& u) {
                       return interpret(*body.graph, concat_lists(u, body.captures), &slots);
                     },
                     concat_lists({scalar_tensor(0, i64)}, init));
      std::vector<Tensor> vars_k(replay.begin() + 1, replay.end());
      std::vector<Tensor> watch;
      for (size_t i : floating)
        watch.push_back(vars_k[i]);
      watch.insert(watch.end(), src.tensors.begin(), src.tensors.end());
      const std::vector<Tensor> grads(s.begin() + 1, s.begin() + 1 + static_cast<long>(nf));
      const std::vector<Tensor> g =
          region_vjp(*body.graph, concat_lists(concat_lists({k}, vars_k), body.captures), 1, watch,
                     src.variables, grads);
      std::vector<Tensor> next{k};
      for (size_t i = 0; i < nf; ++i)
        next.push_back(g[i]);
      for (size_t i = 0; i < nx + nv; ++i)
        next.push_back(add(s[1 + nf + i], g[nf + i]));
      return next;
    };
    const std::vector<Tensor> out =
        while_loop([](const std::vector<Tensor>& s) { return greater(s[0], 0); }, step, state);
    return std::vector<Tensor>(out.begin() + 1, out.end());
  };
  const std::vector<Tensor> inputs = concat_lists(concat_lists(float_init, src.tensors), src.reads);
  for (GradientTape* t : tapes)
    t->record_closure(inputs, outputs, vjp);
}

}  // namespace kiln::tracer
