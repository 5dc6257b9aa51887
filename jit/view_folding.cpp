// Movement ops folded into kernel indexing: a transpose, slice, broadcast or reshape whose
// only consumer is one elementwise group becomes that group's prologue. At run time it makes
// a view (no copy) and the kernel reads the view through its strides, so neither a step of
// its own nor a contiguous copy before the kernel remains.
#include <algorithm>

#include <kiln/jit/fusion.h>

namespace kiln::jit {

bool is_view_op(const std::string& op) {
  return op == "transpose" || op == "slice" || op == "broadcast_to" || op == "reshape";
}

std::vector<int> step_reads(const ir::Graph& g, const FusionPlan& plan, const Step& s) {
  if (s.group < 0) return g.nodes[static_cast<size_t>(s.node)].inputs;
  const FusionGroup& grp = plan.groups[static_cast<size_t>(s.group)];
  std::vector<int> reads = grp.inputs;
  for (int n : grp.prologue)
    for (int v : g.nodes[static_cast<size_t>(n)].inputs)
      reads.push_back(v);
  return reads;
}

std::vector<int> sole_readers(const ir::Graph& g, const FusionPlan& plan) {
  std::vector<int> reader(g.types.size(), -1);
  for (size_t k = 0; k < plan.steps.size(); ++k)
    for (int v : step_reads(g, plan, plan.steps[k])) {
      int& r = reader[static_cast<size_t>(v)];
      r = (r == -1 || r == static_cast<int>(k)) ? static_cast<int>(k) : -2;
    }
  for (int v : g.results)
    reader[static_cast<size_t>(v)] = -2;
  return reader;
}

void fold_into_sole_readers(const ir::Graph& g, FusionPlan& plan,
                            const std::function<bool(size_t k, size_t r, int v)>& fold) {
  for (bool changed = true; changed;) {
    changed = false;
    const std::vector<int> reader = sole_readers(g, plan);
    for (size_t k = 0; k < plan.steps.size() && !changed; ++k) {
      const Step& s = plan.steps[k];
      if (s.node < 0 || g.nodes[static_cast<size_t>(s.node)].outputs.size() != 1) continue;
      const int v = g.nodes[static_cast<size_t>(s.node)].outputs[0];
      const int r = reader[static_cast<size_t>(v)];
      if (r < 0 || plan.steps[static_cast<size_t>(r)].group < 0) continue;
      changed = fold(k, static_cast<size_t>(r), v);
    }
  }
}

void absorb_views(const ir::Graph& g, FusionPlan& plan) {
  fold_into_sole_readers(g, plan, [&](size_t k, size_t r, int v) {
    const int node = plan.steps[k].node;
    const ir::Node& n = g.nodes[static_cast<size_t>(node)];
    if (!is_view_op(n.op) || n.inputs.size() != 1) return false;
    FusionGroup& grp = plan.groups[static_cast<size_t>(plan.steps[r].group)];
    if (grp.row_program || grp.column_program) return false;
    // Read by the kernel or by a prologue node: chains of views fold from the kernel out.
    if (g.types[static_cast<size_t>(v)].dtype != g.types[static_cast<size_t>(n.inputs[0])].dtype)
      return false;
    grp.prologue.insert(grp.prologue.begin(), node);
    plan.steps.erase(plan.steps.begin() + static_cast<std::ptrdiff_t>(k));
    return true;
  });
}

}  // namespace kiln::jit
