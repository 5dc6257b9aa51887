// Small contractions folded into column programs (fusion.h, absorb_contractions). A matrix
// product with a short contraction is mostly call overhead for a library: [128, 10] x
// [10, 128] is 164K multiply-adds, about 1 us of arithmetic on one core, while a dnnl_sgemm
// call of that shape takes 6-13 us. Inside the column program that consumes it, each element
// is K multiply-adds read straight from the two operands, and the product is never stored.
#include <algorithm>

#include <kiln/jit/fusion.h>
#include <kiln/jit/graph_util.h>

namespace kiln::jit {
namespace {

// A 2-D f32 or f64 matmul with static shapes and a contraction of at most
// kMaxFusedContraction.
bool is_small_contraction(const ir::Graph& g, const ir::Node& n) {
  if (!is_static_matrix_product(g, n)) return false;
  const TensorType& a = g.types[static_cast<size_t>(n.inputs[0])];
  const TensorType& b = g.types[static_cast<size_t>(n.inputs[1])];
  if ((a.dtype != DType::f32 && a.dtype != DType::f64) || b.dtype != a.dtype) return false;
  return a.shape[1] >= 1 && a.shape[1] <= kMaxFusedContraction;
}

}  // namespace

void absorb_contractions(const ir::Graph& g, FusionPlan& plan) {
  fold_into_sole_readers(g, plan, [&](size_t k, size_t r, int v) {
    const int node = plan.steps[k].node;
    const ir::Node& n = g.nodes[static_cast<size_t>(node)];
    if (!is_small_contraction(g, n)) return false;
    FusionGroup& grp = plan.groups[static_cast<size_t>(plan.steps[r].group)];
    // The product's index space must be the program's: element (i, j) of the product is
    // computed at row i, column j.
    if (!grp.column_program || g.types[static_cast<size_t>(v)].shape != grp.shape) return false;
    // The operands are read at the product's own indices only: neither may also be read by
    // the program another way, nor be the same value twice.
    const int a = n.inputs[0], b = n.inputs[1];
    auto in_group = [&](int x) {
      return std::find(grp.inputs.begin(), grp.inputs.end(), x) != grp.inputs.end();
    };
    if (a == b || in_group(a) || in_group(b)) return false;
    // Nor may the product be an operand of a product already in the program, which reads its
    // operands from memory by row and by column.
    for (int m : grp.nodes) {
      const ir::Node& member = g.nodes[static_cast<size_t>(m)];
      if (member.op == "matmul" && (member.inputs[0] == v || member.inputs[1] == v)) return false;
    }
    grp.inputs.erase(std::find(grp.inputs.begin(), grp.inputs.end(), v));
    grp.inputs.push_back(a);
    grp.inputs.push_back(b);
    grp.nodes.insert(std::upper_bound(grp.nodes.begin(), grp.nodes.end(), node), node);
    // The operands were ready when the product ran, so they are when the program runs.
    plan.steps.erase(plan.steps.begin() + static_cast<std::ptrdiff_t>(k));
    return true;
  });
}

}  // namespace kiln::jit
