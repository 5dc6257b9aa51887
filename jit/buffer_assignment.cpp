#include <kiln/jit/buffer_assignment.h>

#include <kiln/core/first_fit.h>

#include <algorithm>
#include <map>
#include <numeric>

namespace kiln::jit {
namespace {

constexpr size_t kGranule = 64;  // the arena's alignment

size_t granules(const TensorType& t) {
  const size_t bytes =
      static_cast<size_t>(std::max<int64_t>(t.shape.numel(), 1)) * size_of(t.dtype);
  return (bytes + kGranule - 1) / kGranule * kGranule;
}

// Union-find over values that share storage.
struct Aliases {
  std::vector<int> parent;
  explicit Aliases(size_t n) : parent(n) { std::iota(parent.begin(), parent.end(), 0); }
  int find(int v) {
    while (parent[static_cast<size_t>(v)] != v)
      v = parent[static_cast<size_t>(v)] =
          parent[static_cast<size_t>(parent[static_cast<size_t>(v)])];
    return v;
  }
  void join(int a, int b) { parent[static_cast<size_t>(find(a))] = find(b); }
};

}  // namespace

bool may_alias_input(const std::string& op) {
  static const char* const kViews[] = {"reshape",     "reshape_like",  "squeeze",
                                       "expand_dims", "broadcast_to",  "transpose",
                                       "slice",       "stop_gradient", "identity"};
  return std::find(std::begin(kViews), std::end(kViews), op) != std::end(kViews);
}

BufferAssignment assign_buffers(const ir::Graph& g, const FusionPlan& plan,
                                const std::vector<std::vector<int>>& release_after,
                                const std::vector<InPlace>& in_place) {
  BufferAssignment out;
  out.outside_arena.assign(plan.steps.size(), false);
  const size_t nv = g.types.size();
  for (const TensorType& t : g.types)
    for (int64_t d : t.shape)
      if (d < 0) return out;  // dynamic: sizes are known only at run time

  Aliases alias(nv);
  // An output written over its input is that input's buffer, not a new one.
  std::vector<bool> reuses(nv, false);
  for (const InPlace& p : in_place) {
    alias.join(p.output, p.input);
    reuses[static_cast<size_t>(p.output)] = true;
  }
  std::vector<bool> fresh(nv, false);  // produced by an allocating step
  for (const Step& s : plan.steps) {
    if (s.group >= 0) {
      for (int n : plan.groups[static_cast<size_t>(s.group)].prologue) {
        const ir::Node& view = g.nodes[static_cast<size_t>(n)];
        alias.join(view.outputs[0], view.inputs[0]);
      }
      for (int v : plan.groups[static_cast<size_t>(s.group)].outputs)
        fresh[static_cast<size_t>(v)] = true;
      continue;
    }
    const ir::Node& n = g.nodes[static_cast<size_t>(s.node)];
    if (n.op == "constant" || n.op == "read_variable" || n.op == "assign_variable") continue;
    if (may_alias_input(n.op) && !n.inputs.empty()) {
      for (int v : n.outputs)
        alias.join(v, n.inputs[0]);
      continue;
    }
    for (int v : n.outputs)
      fresh[static_cast<size_t>(v)] = true;
  }
  // Storage that escapes: results and variables' new values, with everything aliasing them.
  std::vector<bool> escapes(nv, false);
  for (int v : g.results)
    escapes[static_cast<size_t>(alias.find(v))] = true;
  for (const ir::Node& n : g.nodes)
    if (n.op == "assign_variable")
      for (int v : n.inputs)
        escapes[static_cast<size_t>(alias.find(v))] = true;
  // Control flow regions run their own graphs: keep their inputs and outputs outside.
  for (const ir::Node& n : g.nodes)
    if (!n.subgraphs.empty()) {
      for (int v : n.inputs)
        escapes[static_cast<size_t>(alias.find(v))] = true;
      for (int v : n.outputs)
        escapes[static_cast<size_t>(alias.find(v))] = true;
    }

  // A storage dies after the last step that releases any value aliasing it.
  std::vector<int> death(nv, -1), live_values(nv, 0);
  for (size_t v = 0; v < nv; ++v)
    ++live_values[static_cast<size_t>(alias.find(static_cast<int>(v)))];
  std::vector<size_t> offset(nv, 0), size(nv, 0);
  std::vector<bool> placed(nv, false);
  memory::FirstFit sim;  // the arena's own placement, unbounded
  for (size_t k = 0; k < plan.steps.size(); ++k) {
    const Step& s = plan.steps[k];
    const std::vector<int>& outs = s.group >= 0 ? plan.groups[static_cast<size_t>(s.group)].outputs
                                                : g.nodes[static_cast<size_t>(s.node)].outputs;
    bool outside = false;
    for (int v : outs)
      outside |= escapes[static_cast<size_t>(alias.find(v))];
    // A view gets no buffer here; one that must copy (a reshape of a strided value) copies
    // to the heap, so that the arena's placement at run time stays the simulated one.
    outside |= s.node >= 0 && may_alias_input(g.nodes[static_cast<size_t>(s.node)].op);
    out.outside_arena[k] = outside;
    if (!outside)
      for (int v : outs) {
        if (!fresh[static_cast<size_t>(v)]) continue;
        const size_t bytes = granules(g.types[static_cast<size_t>(v)]);
        offset[static_cast<size_t>(v)] = *sim.take(bytes);
        size[static_cast<size_t>(v)] = bytes;
        placed[static_cast<size_t>(v)] = true;
        out.intermediate_bytes += bytes;
      }
    // Values released here: a storage returns when its last alias goes.
    for (int v : release_after[k]) {
      const int root = alias.find(v);
      if (--live_values[static_cast<size_t>(root)] > 0) continue;
      for (size_t u = 0; u < nv; ++u)
        if (placed[u] && alias.find(static_cast<int>(u)) == root) {
          sim.give(offset[u], size[u]);
          placed[u] = false;
        }
    }
  }
  out.arena_bytes = sim.peak();
  return out;
}

}  // namespace kiln::jit
