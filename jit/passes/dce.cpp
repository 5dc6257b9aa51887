// Dead code elimination. A node is dead when none of its outputs is used (by a later node or
// as a result) and it has no side effect; dead nodes are removed, and so are the constants
// no constant node refers to any more (Graph::constants is compacted, indices renumbered).
//
// Never removed, used or not:
//   - assign_variable;
//   - random draws: each reserves the next Philox counters, so dropping an unused draw would
//     shift every later draw, and traced draws must stay identical to eager ones;
//   - cond and while nodes with either of those inside a region.
// Removed when unused: read_variable, constants, every other primitive, and cond/while nodes
// whose regions have no side effect. A removed node's run-time error (an integer division
// by zero) goes with it, as in XLA.
// Regions keep their params and results (the node's interface); dce runs inside them too.

#include <kiln/jit/graph_util.h>
#include <kiln/jit/pass.h>

namespace kiln::jit {
namespace {

bool eliminate(ir::Graph& g) {
  std::vector<bool> live(g.types.size(), false);
  for (int v : g.results)
    live[static_cast<size_t>(v)] = true;
  std::vector<bool> keep(g.nodes.size(), false);
  for (size_t i = g.nodes.size(); i-- > 0;) {
    const ir::Node& n = g.nodes[i];
    bool needed = has_side_effects(n);
    for (int v : n.outputs)
      needed = needed || live[static_cast<size_t>(v)];
    if (!needed) continue;
    keep[i] = true;
    for (int v : n.inputs)
      live[static_cast<size_t>(v)] = true;
  }
  const size_t before_constants = g.constants.size(), before_values = g.types.size();
  std::vector<ir::Node> kept;
  kept.reserve(g.nodes.size());
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (keep[i]) kept.push_back(std::move(g.nodes[i]));
  const bool removed = kept.size() != g.nodes.size();
  g.nodes = std::move(kept);
  compact(g);  // also drops constants that were unused before this pass
  return removed || g.constants.size() != before_constants || g.types.size() != before_values;
}

}  // namespace

Pass dce() {
  return Pass("dce", eliminate);
}

}  // namespace kiln::jit
