// Constant folding: a primitive node whose inputs are all constants is run with the eager
// kernels (through dispatch, as the interpreter runs it, with every hook suspended so no tape
// or enclosing trace sees it) and replaced by one constant node per output.
//
//   %1 = constant() {index = 0} : f32[]            %1 = constant() {index = 0} : f32[]
//   %2 = exp(%1) : f32[]                    ->     %2 = constant() {index = 1} : f32[]
//   %3 = mul(%0, %2) : f32[4]                      %3 = mul(%0, %2) : f32[4]
//
// Assumes: a verified graph. Guarantees: outputs keep their value ids and exact types; the
// constants that fed a folded node stay (dce removes them once unused).
// Leaves alone:
//   - stateful nodes (random draws, variable reads and assigns) and cond/while nodes;
//   - nodes with an output whose type has an unknown dim (a constant's type is exact, and
//     replacing f32[?] by f32[3] would change the declared type);
//   - results over kMaxFoldedElements elements, and results that would materialize more than
//     kMaxExpandedElements elements out of fewer input elements (broadcast_to, full, iota,
//     a scalar broadcast by a binary op): a broadcast of a scalar costs nothing once fused,
//     a big constant costs memory and graph size;
//   - nodes whose kernel raises (an integer division by zero): the error stays a run-time
//     error of the function, as in eager mode.

#include <kiln/core/dispatch.h>
#include <kiln/jit/graph_util.h>
#include <kiln/jit/pass.h>

namespace kiln::jit {
namespace {

constexpr int64_t kMaxFoldedElements = int64_t{1} << 20;
constexpr int64_t kMaxExpandedElements = 256;

bool worth_folding(const ir::Graph& g, const ir::Node& n) {
  int64_t in = 0, out = 0;
  for (int v : n.inputs)
    in += g.types[static_cast<size_t>(v)].shape.numel();
  for (int v : n.outputs) {
    const TensorType& t = g.types[static_cast<size_t>(v)];
    if (!fully_known(t)) return false;
    out += t.shape.numel();
  }
  if (out > kMaxFoldedElements) return false;
  return out <= in || out <= kMaxExpandedElements;
}

bool fold(ir::Graph& g) {
  // Per value: the index of the constant that holds it, or -1. Filled in program order, so a
  // chain of foldable nodes folds in one sweep.
  std::vector<int64_t> constant(g.types.size(), -1);
  auto is_constant = [&](int v) { return constant[static_cast<size_t>(v)] >= 0; };

  std::vector<ir::Node> nodes;
  nodes.reserve(g.nodes.size());
  bool changed = false;
  for (ir::Node& n : g.nodes) {
    if (n.op == "constant") constant[static_cast<size_t>(n.outputs[0])] = n.attrs.i("index");
    const OpDef* op = n.subgraphs.empty() ? registry().find(n.op) : nullptr;
    const bool candidate = op != nullptr && !is_stateful(n) && !n.outputs.empty() &&
                           std::all_of(n.inputs.begin(), n.inputs.end(), is_constant) &&
                           worth_folding(g, n);
    std::vector<Tensor> out;
    if (candidate) {
      std::vector<Tensor> in;
      for (int v : n.inputs)
        in.push_back(g.constants[static_cast<size_t>(constant[static_cast<size_t>(v)])]);
      try {
        SuspendHooks quiet;
        out = dispatch(*op, in, n.attrs);
        for (Tensor& t : out)
          t = t.contiguous();  // a view (transpose, broadcast) would keep its source alive
      } catch (const Error&) {
        out.clear();  // the kernel refuses these inputs: leave the error to run time
      }
      if (out.size() != n.outputs.size()) out.clear();
      for (size_t k = 0; k < out.size(); ++k)
        if (!(out[k].type() == g.types[static_cast<size_t>(n.outputs[k])])) out.clear();
    }
    if (out.empty()) {
      nodes.push_back(std::move(n));
      continue;
    }
    for (size_t k = 0; k < out.size(); ++k) {
      ir::Node c;
      c.op = "constant";
      c.outputs = {n.outputs[k]};
      c.attrs.set("index", static_cast<int64_t>(g.constants.size()));
      constant[static_cast<size_t>(n.outputs[k])] = static_cast<int64_t>(g.constants.size());
      g.constants.push_back(std::move(out[k]));
      nodes.push_back(std::move(c));
    }
    changed = true;
  }
  g.nodes = std::move(nodes);
  return changed;
}

}  // namespace

Pass constant_folding() {
  return Pass("constant_folding", fold);
}

}  // namespace kiln::jit
