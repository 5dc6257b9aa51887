// The graph interpreter: runs a Graph node by node with the eager kernels, through dispatch,
// so tapes observe the primitives (gradients flow through a called function) and an outer
// trace records them (a function called inside another is inlined).

#include <kiln/core/random.h>
#include <kiln/tracer/trace.h>

namespace kiln::tracer {
namespace {

bool matches(const TensorType& spec, const Tensor& t) {
  if (spec.dtype != t.dtype() || spec.shape.rank() != t.rank()) return false;
  for (int64_t d = 0; d < t.rank(); ++d)
    if (spec.shape[d] >= 0 && spec.shape[d] != t.dim(d)) return false;
  return true;
}

}  // namespace

std::vector<Tensor> interpret(const ir::Graph& g, const std::vector<Tensor>& inputs) {
  KILN_CHECK(inputs.size() == g.params.size(), "function '{}': expects {} tensor inputs, got {}",
             g.name, g.params.size(), inputs.size());
  std::vector<Tensor> vals(g.types.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorType& spec = g.types[g.params[i]];
    KILN_CHECK(inputs[i].defined() && matches(spec, inputs[i]),
               "function '{}': input {} is {} but the signature says {}{}", g.name, i,
               inputs[i].defined() ? inputs[i].type_str() : "undefined", name(spec.dtype),
               spec.shape.str());
    vals[g.params[i]] = inputs[i];
  }
  for (const ir::Node& n : g.nodes) {
    if (n.op == "constant") {
      vals[n.outputs[0]] = g.constants[n.attrs.i("index")];
    } else if (n.op == "read_variable") {
      const auto& slot = g.variables[n.attrs.i("var")];
      KILN_CHECK(slot.var != nullptr, "function '{}': variable '{}' is not bound", g.name,
                 slot.name);
      vals[n.outputs[0]] = Variable(slot.var).value();
    } else if (n.op == "assign_variable") {
      const auto& slot = g.variables[n.attrs.i("var")];
      KILN_CHECK(slot.var != nullptr, "function '{}': variable '{}' is not bound", g.name,
                 slot.name);
      Variable(slot.var).assign(vals[n.inputs[0]]);
    } else {
      const OpDef& op = registry().op(n.op);
      std::vector<Tensor> in;
      in.reserve(n.inputs.size());
      for (int v : n.inputs)
        in.push_back(vals[v]);
      std::vector<Tensor> out;
      if (op.has(kStateful) && n.attrs.has("blocks")) {
        // A random draw: fresh counters on every call, as an eager draw would take.
        Attrs a = n.attrs;
        const random::State st = random::reserve(static_cast<uint64_t>(a.i("blocks")));
        a.set("seed", static_cast<int64_t>(st.seed));
        a.set("offset", static_cast<int64_t>(st.offset));
        out = dispatch(op, in, a);
      } else {
        out = dispatch(op, in, n.attrs);
      }
      for (size_t k = 0; k < n.outputs.size(); ++k)
        vals[n.outputs[k]] = std::move(out[k]);
    }
  }
  std::vector<Tensor> results;
  for (int v : g.results)
    results.push_back(vals[v]);
  return results;
}

}  // namespace kiln::tracer
