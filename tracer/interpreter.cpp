// The graph interpreter: runs a Graph node by node with the eager kernels, through dispatch,
// so tapes observe the primitives (gradients flow through a called function) and an outer
// trace records them (a function called inside another is inlined).

#include <kiln/core/random.h>
#include <kiln/tracer/control_flow.h>
#include <kiln/tracer/trace.h>

namespace kiln::tracer {
bool fits(const TensorType& spec, const Tensor& t) {
  if (spec.dtype != t.dtype() || spec.shape.rank() != t.rank()) return false;
  for (int64_t d = 0; d < t.rank(); ++d)
    if (spec.shape[d] >= 0 && spec.shape[d] != t.dim(d)) return false;
  return true;
}

void run_node(const ir::Graph& g, const ir::Node& n, std::vector<Tensor>& vals,
              const std::vector<ir::VariableSlot>& vars) {
  if (n.op == "constant") {
    vals[n.outputs[0]] = g.constants[n.attrs.i("index")];
  } else if (n.op == "read_variable") {
    const auto& slot = vars[n.attrs.i("var")];
    KILN_CHECK(slot.var != nullptr, "function '{}': variable '{}' is not bound", g.name, slot.name);
    vals[n.outputs[0]] = Variable(slot.var).value();
  } else if (n.op == "assign_variable") {
    const auto& slot = vars[n.attrs.i("var")];
    KILN_CHECK(slot.var != nullptr, "function '{}': variable '{}' is not bound", g.name, slot.name);
    Variable(slot.var).assign(vals[n.inputs[0]]);
  } else if (n.op == "cond" || n.op == "while") {
    // Through the public control flow: eager on concrete values, and rebuilt as a node of
    // an enclosing trace when this function is being inlined into one.
    std::vector<Tensor> in;
    for (int v : n.inputs)
      in.push_back(vals[v]);
    const ir::Graph& a = *n.subgraphs[0];
    const ir::Graph& b = *n.subgraphs[1];
    std::vector<Tensor> out;
    if (n.op == "cond") {
      const size_t k = static_cast<size_t>(n.attrs.i("then_inputs"));
      const std::vector<Tensor> then_args(in.begin() + 1, in.begin() + 1 + k);
      const std::vector<Tensor> else_args(in.begin() + 1 + k, in.end());
      out = detail::cond_impl(
          in[0], [&] { return interpret(a, then_args, &vars); },
          [&] { return interpret(b, else_args, &vars); });
    } else {
      const size_t nv = static_cast<size_t>(n.attrs.i("num_vars"));
      const size_t nc = static_cast<size_t>(n.attrs.i("cond_inputs"));
      const std::vector<Tensor> cond_caps(in.begin() + nv, in.begin() + nv + nc);
      const std::vector<Tensor> body_caps(in.begin() + nv + nc, in.end());
      auto with = [](std::vector<Tensor> v, const std::vector<Tensor>& extra) {
        v.insert(v.end(), extra.begin(), extra.end());
        return v;
      };
      out = while_loop(
          [&](const std::vector<Tensor>& v) { return interpret(a, with(v, cond_caps), &vars)[0]; },
          [&](const std::vector<Tensor>& v) { return interpret(b, with(v, body_caps), &vars); },
          std::vector<Tensor>(in.begin(), in.begin() + nv));
    }
    for (size_t k = 0; k < n.outputs.size(); ++k)
      vals[n.outputs[k]] = std::move(out[k]);
  } else {
    const OpDef& op = registry().op(n.op);
    std::vector<Tensor> in;
    in.reserve(n.inputs.size());
    for (int v : n.inputs)
      in.push_back(vals[v]);
    std::vector<Tensor> out;
    if (op.has(kStateful) && n.attrs.has("blocks")) {
      // A random draw: fresh counters on every call, as an eager draw would take (for a
      // _like draw, as many as the concrete input's shape needs).
      out = dispatch(op, in, random::redraw(op, in, n.attrs));
    } else {
      out = dispatch(op, in, n.attrs);
    }
    for (size_t k = 0; k < n.outputs.size(); ++k)
      vals[n.outputs[k]] = std::move(out[k]);
  }
}

std::vector<Tensor> interpret(const ir::Graph& g, const std::vector<Tensor>& inputs,
                              const std::vector<ir::VariableSlot>* variables) {
  const std::vector<ir::VariableSlot>& vars = variables ? *variables : g.variables;
  KILN_CHECK(inputs.size() == g.params.size(), "function '{}': expects {} tensor inputs, got {}",
             g.name, g.params.size(), inputs.size());
  std::vector<Tensor> vals(g.types.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorType& spec = g.types[g.params[i]];
    KILN_CHECK(inputs[i].defined() && fits(spec, inputs[i]),
               "function '{}': input {} is {} but the signature says {}{}", g.name, i,
               inputs[i].defined() ? inputs[i].type_str() : "undefined", name(spec.dtype),
               spec.shape.str());
    vals[g.params[i]] = inputs[i];
  }
  for (const ir::Node& n : g.nodes)
    run_node(g, n, vals, vars);
  std::vector<Tensor> results;
  for (int v : g.results)
    results.push_back(vals[v]);
  return results;
}

}  // namespace kiln::tracer
