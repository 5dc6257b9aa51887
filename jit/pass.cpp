#include <kiln/jit/graph_util.h>
#include <kiln/jit/pass.h>

namespace kiln::jit {

bool Pass::run(ir::Graph& g) const {
  bool changed = false;
  for (ir::Node& n : g.nodes)
    for (auto& sub : n.subgraphs) {
      // A region may be shared with other graphs (a Graph copy shares them): the pass works
      // on a copy, which replaces the region when it changed.
      auto copy = std::make_shared<ir::Graph>(deep_copy(*sub));
      if (!run(*copy)) continue;
      sub = std::move(copy);
      changed = true;
    }
  changed |= run_one_(g);
  return changed;
}

}  // namespace kiln::jit
