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

void absorb_row_contractions(const ir::Graph& g, FusionPlan& plan) {
  const std::vector<int> producer = definers(g);
  // The step that makes each value: -1 for the function's inputs, constants aside.
  auto made_at = [&](int v) {
    for (size_t k = 0; k < plan.steps.size(); ++k) {
      const Step& s = plan.steps[k];
      const std::vector<int>& outs = s.group >= 0
                                         ? plan.groups[static_cast<size_t>(s.group)].outputs
                                         : g.nodes[static_cast<size_t>(s.node)].outputs;
      if (std::find(outs.begin(), outs.end(), v) != outs.end()) return static_cast<int>(k);
    }
    return -1;
  };
  auto has = [](const std::vector<int>& xs, int x) {
    return std::find(xs.begin(), xs.end(), x) != xs.end();
  };
  for (size_t k = 0; k < plan.steps.size(); ++k) {
    const Step s = plan.steps[k];
    if (s.group >= 0) continue;
    const ir::Node& n = g.nodes[static_cast<size_t>(s.node)];
    if (!is_static_matrix_product(g, n)) continue;
    const int t = producer[static_cast<size_t>(n.inputs[0])], d = n.inputs[1], p = n.outputs[0];
    if (t < 0) continue;
    const ir::Node& tr = g.nodes[static_cast<size_t>(t)];
    if (tr.op != "transpose" || tr.attrs.ints("perm") != std::vector<int64_t>{1, 0}) continue;
    const int h = tr.inputs[0];
    const TensorType& ht = g.types[static_cast<size_t>(h)];
    const TensorType& dt = g.types[static_cast<size_t>(d)];
    // The program keeps K sums per column, in registers across the rows.
    if ((ht.dtype != DType::f32 && ht.dtype != DType::f64) || dt.dtype != ht.dtype ||
        dt.shape[1] > kMaxFusedContraction || h == d)
      continue;
    for (size_t r = 0; r < plan.steps.size(); ++r) {
      if (plan.steps[r].group < 0) continue;
      FusionGroup& grp = plan.groups[static_cast<size_t>(plan.steps[r].group)];
      if (!grp.column_program || grp.shape != ht.shape) continue;
      // H at each element: a member's output, or an input read at its own index (not a
      // product's operand, which the program reads by row and column).
      std::vector<int> operands;
      for (int m : grp.nodes)
        if (g.nodes[static_cast<size_t>(m)].op == "matmul")
          operands.insert(operands.end(), g.nodes[static_cast<size_t>(m)].inputs.begin(),
                          g.nodes[static_cast<size_t>(m)].inputs.end());
      bool member_h = false;
      for (int m : grp.nodes)
        member_h |= g.nodes[static_cast<size_t>(m)].outputs[0] == h;
      if (!member_h && (!has(grp.inputs, h) || has(operands, h))) continue;
      // D by row: an operand already, or a value the program does not read yet that is ready
      // before it runs.
      if (has(grp.inputs, d) ? !has(operands, d) : made_at(d) >= static_cast<int>(r)) continue;
      // Every reader of P runs after the program.
      bool later = true;
      for (size_t q = 0; q <= r && later; ++q)
        later = !has(step_reads(g, plan, plan.steps[q]), p);
      if (!later) continue;
      if (!has(grp.inputs, d)) grp.inputs.push_back(d);
      grp.nodes.insert(std::upper_bound(grp.nodes.begin(), grp.nodes.end(), s.node), s.node);
      grp.row_contractions.push_back(s.node);
      grp.outputs.push_back(p);
      plan.steps.erase(plan.steps.begin() + static_cast<std::ptrdiff_t>(k));
      // The transpose's step goes too where nothing else reads it.
      const int hv = n.inputs[0];
      bool read = has(g.results, hv);
      for (const Step& q : plan.steps)
        read |= has(step_reads(g, plan, q), hv);
      if (!read)
        for (size_t q = 0; q < plan.steps.size(); ++q)
          if (plan.steps[q].node == t) {
            plan.steps.erase(plan.steps.begin() + static_cast<std::ptrdiff_t>(q));
            break;
          }
      k = static_cast<size_t>(-1);  // the plan changed: scan again from the start
      break;
    }
  }
}

}  // namespace kiln::jit
