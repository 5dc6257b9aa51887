#include "epilogue.h"

#include <algorithm>

#include <kiln/jit/graph_util.h>

namespace kiln::jit {

bool fuse_epilogues(ir::Graph& g, const Epilogue& e) {
  std::vector<int> uses(g.types.size(), 0);
  for (const ir::Node& n : g.nodes)
    for (int v : n.inputs)
      ++uses[static_cast<size_t>(v)];
  for (int v : g.results)
    ++uses[static_cast<size_t>(v)];
  const std::vector<int> def = definers(g);
  std::vector<int> relu_of(g.types.size(), -1);  // value -> the node applying relu to it
  for (size_t j = 0; j < g.nodes.size(); ++j)
    if (g.nodes[j].op == "relu")
      relu_of[static_cast<size_t>(g.nodes[j].inputs[0])] = static_cast<int>(j);
  std::vector<bool> drop(g.nodes.size(), false);
  std::vector<std::pair<size_t, ir::Node>> replace;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& add = g.nodes[i];
    if (add.op != "add" || drop[i]) continue;
    for (int side = 0; side < 2; ++side) {
      const int prod = add.inputs[static_cast<size_t>(side)];
      const int bias = add.inputs[static_cast<size_t>(1 - side)];
      const int d = def[static_cast<size_t>(prod)];
      if (d < 0 || uses[static_cast<size_t>(prod)] != 1 || drop[static_cast<size_t>(d)]) continue;
      const ir::Node& c = g.nodes[static_cast<size_t>(d)];
      if (c.op != e.contraction ||
          g.types[static_cast<size_t>(add.outputs[0])] != g.types[static_cast<size_t>(prod)])
        continue;
      if (!e.fits(g, c, bias)) continue;
      // A relu that is the add's only user becomes the post-op.
      size_t last = i;
      std::string act = "none";
      const int sum = add.outputs[0];
      if (uses[static_cast<size_t>(sum)] == 1 && relu_of[static_cast<size_t>(sum)] >= 0) {
        last = static_cast<size_t>(relu_of[static_cast<size_t>(sum)]);
        act = "relu";
      }
      Attrs attrs = c.attrs;
      attrs.set("act", act);
      ir::Node fused{e.fused,
                     {c.inputs[0], c.inputs[1], bias},
                     {g.nodes[last].outputs[0]},
                     std::move(attrs),
                     {}};
      drop[static_cast<size_t>(d)] = true;
      drop[i] = true;
      drop[last] = true;
      replace.emplace_back(last, std::move(fused));
      break;
    }
  }
  if (replace.empty()) return false;
  std::sort(replace.begin(), replace.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<ir::Node> nodes;
  size_t r = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    if (r < replace.size() && replace[r].first == i) {
      nodes.push_back(std::move(replace[r++].second));
      continue;
    }
    if (!drop[i]) nodes.push_back(std::move(g.nodes[i]));
  }
  g.nodes = std::move(nodes);
  compact(g);
  return true;
}

}  // namespace kiln::jit
