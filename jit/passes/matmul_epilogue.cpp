// Contraction epilogues: act(matmul(a, b) + bias) -> matmul_bias_act(a, b, bias) {act}, one
// oneDNN call with a bias and a post-op instead of a matmul and an elementwise kernel.
//
// Assumes: a verified, simplified graph (it runs once, after the simplification passes, on
// what the JIT compiles; such graphs are not differentiated any more, and the fused op has no
// VJP). Rewrites only where the matmul's result feeds nothing but the add (and the add's only
// the relu, for act = relu): a value used elsewhere is still needed on its own. a and b are
// f32 matrices and the bias an f32 vector of the product's column count.

#include <algorithm>

#include <kiln/jit/graph_util.h>
#include <kiln/jit/pass.h>

namespace kiln::jit {
namespace {

bool rewrite(ir::Graph& g) {
  std::vector<int> uses(g.types.size(), 0);
  for (const ir::Node& n : g.nodes)
    for (int v : n.inputs)
      ++uses[static_cast<size_t>(v)];
  for (int v : g.results)
    ++uses[static_cast<size_t>(v)];
  const std::vector<int> def = definers(g);
  auto type = [&](int v) -> const TensorType& { return g.types[static_cast<size_t>(v)]; };
  std::vector<bool> drop(g.nodes.size(), false);
  std::vector<std::pair<size_t, ir::Node>> replace;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const ir::Node& add = g.nodes[i];
    if (add.op != "add" || drop[i]) continue;
    for (int side = 0; side < 2; ++side) {
      const int prod = add.inputs[static_cast<size_t>(side)];
      const int bias = add.inputs[static_cast<size_t>(1 - side)];
      const int d = def[static_cast<size_t>(prod)];
      if (d < 0 || uses[static_cast<size_t>(prod)] != 1) continue;
      const ir::Node& mm = g.nodes[static_cast<size_t>(d)];
      if (mm.op != "matmul") continue;
      const TensorType& a = type(mm.inputs[0]);
      const TensorType& b = type(mm.inputs[1]);
      const TensorType& out = type(prod);
      if (a.dtype != DType::f32 || b.dtype != DType::f32 || a.shape.rank() != 2 ||
          b.shape.rank() != 2 || type(bias).dtype != DType::f32 || type(bias).shape.rank() != 1 ||
          type(bias).shape[0] != out.shape[1] || type(add.outputs[0]) != out)
        continue;
      // A relu that is the add's only user becomes the post-op.
      size_t last = i;
      std::string act = "none";
      const int sum = add.outputs[0];
      if (uses[static_cast<size_t>(sum)] == 1)
        for (size_t j = i + 1; j < g.nodes.size(); ++j)
          if (g.nodes[j].op == "relu" && g.nodes[j].inputs[0] == sum) {
            last = j;
            act = "relu";
          }
      ir::Node fused{"matmul_bias_act",
                     {mm.inputs[0], mm.inputs[1], bias},
                     {g.nodes[last].outputs[0]},
                     Attrs{{"act", act}},
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

}  // namespace

Pass matmul_epilogue() {
  return Pass("matmul_epilogue", rewrite);
}

}  // namespace kiln::jit
