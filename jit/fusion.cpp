#include <kiln/jit/fusion.h>

#include <algorithm>
#include <queue>
#include <set>

#include <kiln/core/registry.h>

namespace kiln::jit {
namespace {

bool has_side_effect(const ir::Node& n) {
  if (n.op == "read_variable" || n.op == "assign_variable" || n.op == "cond" || n.op == "while")
    return true;
  const OpDef* def = registry().find(n.op);
  return def != nullptr && def->has(kStateful);
}

}  // namespace

bool is_row_value(const Shape& t, const Shape& rows) {
  if (t == rows) return true;
  if (rows.rank() == 0 || t.rank() < rows.rank() - 1 || t.rank() > rows.rank()) return false;
  for (int64_t d = 0; d < rows.rank() - 1; ++d)
    if (t[d] != rows[d]) return false;
  return t.rank() == rows.rank() - 1 || t[rows.rank() - 1] == 1;
}

bool is_column_value(const Shape& t, const Shape& rows) {
  // Right-aligned, as broadcasting reads it: [C] or [1..., C] with C the last dim of rows.
  if (rows.rank() == 0 || t.rank() == 0 || t.rank() > rows.rank()) return false;
  if (t[t.rank() - 1] != rows[rows.rank() - 1] || rows[rows.rank() - 1] < 0) return false;
  for (int64_t d = 0; d < t.rank() - 1; ++d)
    if (t[d] != 1) return false;
  return true;
}

bool row_readable(const Shape& t, const Shape& rows) {
  if (t == rows) return true;
  bool ones = true;
  for (int64_t d : t)
    ones &= d == 1;
  if (ones || is_column_value(t, rows)) return true;
  // Per row: [R..., 1] exactly (a rank r - 1 value would broadcast against the columns).
  if (t.rank() != rows.rank()) return false;
  for (int64_t d = 0; d < rows.rank() - 1; ++d)
    if (t[d] != rows[d]) return false;
  return t[rows.rank() - 1] == 1;
}

namespace {

bool all_ones(const Shape& s) {
  for (int64_t d : s)
    if (d != 1) return false;
  return true;
}

// Whether `members` can run as one row program (column == false) or column program over
// `rows`: what each member reads must be available where the kernel computes it.
bool valid_program(const ir::Graph& g, const std::vector<int>& producer,
                   const std::set<int>& members, const Shape& rows, bool column) {
  const int64_t r = rows.rank();
  auto is_reduction = [&](int node) {
    return g.nodes[static_cast<size_t>(node)].op.rfind("reduce_", 0) == 0;
  };
  for (int m : members) {
    const ir::Node& n = g.nodes[static_cast<size_t>(m)];
    if (is_reduction(m)) {
      if (g.types[static_cast<size_t>(n.inputs[0])].shape != rows) return false;
      // (With size-1 dims a reduction's result can have the space's shape: in a column
      // program another reduction cannot read it, it is ready only after the last row.)
      const int p = producer[static_cast<size_t>(n.inputs[0])];
      if (column && p >= 0 && members.count(p) != 0 && is_reduction(p)) return false;
      continue;
    }
    const Shape& out = g.types[static_cast<size_t>(n.outputs[0])].shape;
    const bool full = out == rows;
    if (!full && (column || !is_row_value(out, rows))) return false;
    // A per-row reshape: per row on both sides (with one column, [R, 1] is the full shape).
    if (n.op == "reshape" &&
        (column || full || g.types[static_cast<size_t>(n.inputs[0])].shape == rows))
      return false;
    for (int v : n.inputs) {
      const Shape& vs = g.types[static_cast<size_t>(v)].shape;
      const int p = producer[static_cast<size_t>(v)];
      if (p < 0 || members.count(p) == 0) {
        // From outside: a full member reads it as broadcasting does; a per-row member takes
        // one element per row (the same per-row shape) or a single element.
        // (A per-row shape that is also a column's, when rows == columns, would be read
        // both ways: refused.)
        // (A per-row reshape reads the same value per row in its other shape.)
        const bool same_per_row =
            n.op == "reshape" ? is_row_value(vs, rows) && vs != rows : vs == out;
        if (full ? !row_readable(vs, rows)
                 : !(all_ones(vs) || (same_per_row && !is_column_value(vs, rows))))
          return false;
        continue;
      }
      // A column program's reductions finish after the last row: nothing in it reads them.
      if (column && is_reduction(p)) return false;
      // A per-row value without the kept 1 broadcasts against the columns of a full one.
      if (full && r > 1 && vs.rank() == r - 1) return false;
    }
  }
  return true;
}

}  // namespace

FusionPlan plan_fusion(const ir::Graph& g,
                       const std::function<Fusible(const ir::Graph&, const ir::Node&)>& classify) {
  const int num_nodes = static_cast<int>(g.nodes.size());
  std::vector<int> producer(g.types.size(), -1);
  for (int i = 0; i < num_nodes; ++i)
    for (int v : g.nodes[static_cast<size_t>(i)].outputs)
      producer[static_cast<size_t>(v)] = i;

  FusionPlan plan;
  std::vector<int> group_of(static_cast<size_t>(num_nodes), -1);
  // Users of each value, and the side-effecting nodes in program order (each must run after
  // the one before it, which is a dependency like a data edge).
  std::vector<std::vector<int>> users_of(g.types.size());
  for (int i = 0; i < num_nodes; ++i)
    for (int v : g.nodes[static_cast<size_t>(i)].inputs)
      users_of[static_cast<size_t>(v)].push_back(i);
  std::vector<int> next_effect(static_cast<size_t>(num_nodes), -1);
  for (int i = 0, prev = -1; i < num_nodes; ++i)
    if (has_side_effect(g.nodes[static_cast<size_t>(i)])) {
      if (prev >= 0) next_effect[static_cast<size_t>(prev)] = i;
      prev = i;
    }
  // Whether putting node i into group `cand` would make a cycle: some other input of i is
  // produced by an item that `cand` (taken as a unit, like every group) already reaches
  // among the nodes placed so far.
  auto would_cycle = [&](int i, int cand) {
    std::set<int> targets;  // items: a group id, or num_nodes + node for a node alone
    for (int v : g.nodes[static_cast<size_t>(i)].inputs) {
      const int q = producer[static_cast<size_t>(v)];
      if (q < 0 || group_of[static_cast<size_t>(q)] == cand) continue;
      const int gq = group_of[static_cast<size_t>(q)];
      targets.insert(gq >= 0 ? gq : num_nodes + q);
    }
    if (targets.empty()) return false;
    std::vector<bool> seen(static_cast<size_t>(num_nodes), false);
    std::vector<int> stack(plan.groups[static_cast<size_t>(cand)].nodes);
    for (int m : stack)
      seen[static_cast<size_t>(m)] = true;
    auto visit = [&](int u) {
      if (u < 0 || u >= i || seen[static_cast<size_t>(u)]) return false;
      const int gu = group_of[static_cast<size_t>(u)];
      if (targets.count(gu >= 0 ? gu : num_nodes + u) != 0) return true;
      seen[static_cast<size_t>(u)] = true;
      stack.push_back(u);
      if (gu >= 0)  // a group runs as a unit: what any member feeds, the group feeds
        for (int m : plan.groups[static_cast<size_t>(gu)].nodes)
          if (!seen[static_cast<size_t>(m)]) {
            seen[static_cast<size_t>(m)] = true;
            stack.push_back(m);
          }
      return false;
    };
    while (!stack.empty()) {
      const int x = stack.back();
      stack.pop_back();
      for (int v : g.nodes[static_cast<size_t>(x)].outputs)
        for (int u : users_of[static_cast<size_t>(v)])
          if (visit(u)) return true;
      if (visit(next_effect[static_cast<size_t>(x)])) return true;
    }
    return false;
  };
  for (int i = 0; i < num_nodes; ++i) {
    const ir::Node& n = g.nodes[static_cast<size_t>(i)];
    const Fusible kind = n.outputs.size() == 1 ? classify(g, n) : Fusible::no;
    if (kind == Fusible::no) continue;
    const Shape& shape = g.types[static_cast<size_t>(n.outputs[0])].shape;
    auto valid_with = [&](const FusionGroup& grp, bool column) {
      std::set<int> members(grp.nodes.begin(), grp.nodes.end());
      members.insert(i);
      return valid_program(g, producer, members, grp.shape, column);
    };
    auto joins = [&](const FusionGroup& grp) {
      if (kind == Fusible::row_view) return grp.row_program && valid_with(grp, false);
      if (kind == Fusible::row_reduction || kind == Fusible::column_reduction) {
        const bool column = kind == Fusible::column_reduction;
        const Shape& in = g.types[static_cast<size_t>(n.inputs[0])].shape;
        if (grp.shape != in || (column ? grp.row_program : grp.column_program)) return false;
        return valid_with(grp, column);
      }
      if (grp.column_program) return shape == grp.shape && valid_with(grp, true);
      if (grp.row_program) return valid_with(grp, false);
      return grp.shape == shape;
    };
    int chosen = -1;
    for (int v : n.inputs) {
      const int p = producer[static_cast<size_t>(v)];
      const int cand = p < 0 ? -1 : group_of[static_cast<size_t>(p)];
      if (cand < 0 || !joins(plan.groups[static_cast<size_t>(cand)])) continue;
      if (!would_cycle(i, cand)) {
        chosen = cand;
        break;
      }
    }
    if (chosen < 0 && kind == Fusible::row_view) continue;  // never starts a group
    if (chosen < 0) {
      chosen = static_cast<int>(plan.groups.size());
      const bool reduction = kind == Fusible::row_reduction || kind == Fusible::column_reduction;
      plan.groups.push_back(FusionGroup{
          {}, {}, {}, reduction ? g.types[static_cast<size_t>(n.inputs[0])].shape : shape});
    }
    FusionGroup& grp = plan.groups[static_cast<size_t>(chosen)];
    grp.row_program |= kind == Fusible::row_reduction;
    grp.column_program |= kind == Fusible::column_reduction;
    grp.nodes.push_back(i);
    group_of[static_cast<size_t>(i)] = chosen;
  }

  // Merge a group into a consumer group of the same shape where no path between the two runs
  // through a third item (e.g. `y * y` traced before the chain that consumes it).
  for (bool changed = true; changed;) {
    changed = false;
    const int ng = static_cast<int>(plan.groups.size());
    auto item = [&](int node) {
      const int gi = group_of[static_cast<size_t>(node)];
      return gi >= 0 ? gi : ng + node;
    };
    std::vector<std::set<int>> out(static_cast<size_t>(ng + num_nodes));
    int prev_effect = -1;
    for (int i = 0; i < num_nodes; ++i) {
      for (int v : g.nodes[static_cast<size_t>(i)].inputs) {
        const int p = producer[static_cast<size_t>(v)];
        if (p >= 0 && item(p) != item(i)) out[static_cast<size_t>(item(p))].insert(item(i));
      }
      if (has_side_effect(g.nodes[static_cast<size_t>(i)])) {
        if (prev_effect >= 0) out[static_cast<size_t>(item(prev_effect))].insert(item(i));
        prev_effect = i;
      }
    }
    auto reaches_around = [&](int from, int to) {
      std::vector<int> stack;
      std::vector<bool> seen(out.size(), false);
      for (int s : out[static_cast<size_t>(from)])
        if (s != to) stack.push_back(s);
      while (!stack.empty()) {
        const int x = stack.back();
        stack.pop_back();
        if (x == to) return true;
        if (seen[static_cast<size_t>(x)]) continue;
        seen[static_cast<size_t>(x)] = true;
        for (int s : out[static_cast<size_t>(x)])
          stack.push_back(s);
      }
      return false;
    };
    for (int h = 0; h < ng && !changed; ++h) {
      if (plan.groups[static_cast<size_t>(h)].nodes.empty()) continue;
      for (int c : out[static_cast<size_t>(h)]) {
        if (c >= ng) continue;
        const FusionGroup& hg = plan.groups[static_cast<size_t>(h)];
        const FusionGroup& cg = plan.groups[static_cast<size_t>(c)];
        if (hg.shape != cg.shape || reaches_around(h, c)) continue;
        if ((hg.row_program || cg.row_program) && (hg.column_program || cg.column_program))
          continue;
        if (hg.row_program || cg.row_program || hg.column_program || cg.column_program) {
          // The union must be a valid program.
          std::set<int> both(hg.nodes.begin(), hg.nodes.end());
          both.insert(cg.nodes.begin(), cg.nodes.end());
          const bool ok =
              valid_program(g, producer, both, cg.shape, hg.column_program || cg.column_program);
          if (!ok) continue;
        }
        FusionGroup& into = plan.groups[static_cast<size_t>(c)];
        into.row_program |= plan.groups[static_cast<size_t>(h)].row_program;
        into.column_program |= plan.groups[static_cast<size_t>(h)].column_program;
        for (int i : plan.groups[static_cast<size_t>(h)].nodes) {
          into.nodes.push_back(i);
          group_of[static_cast<size_t>(i)] = c;
        }
        std::sort(into.nodes.begin(), into.nodes.end());
        plan.groups[static_cast<size_t>(h)].nodes.clear();
        changed = true;
        break;
      }
    }
  }
  // Drop the groups emptied by merging, renumbering the rest.
  {
    std::vector<int> renumber(plan.groups.size(), -1);
    std::vector<FusionGroup> kept;
    for (size_t gi = 0; gi < plan.groups.size(); ++gi)
      if (!plan.groups[gi].nodes.empty()) {
        renumber[gi] = static_cast<int>(kept.size());
        kept.push_back(std::move(plan.groups[gi]));
      }
    plan.groups = std::move(kept);
    for (int& gi : group_of)
      if (gi >= 0) gi = renumber[static_cast<size_t>(gi)];
  }

  // Inputs and outputs of each group.
  std::vector<bool> is_result(g.types.size(), false);
  for (int v : g.results)
    is_result[static_cast<size_t>(v)] = true;
  std::vector<std::vector<int>> users(g.types.size());
  for (int i = 0; i < num_nodes; ++i)
    for (int v : g.nodes[static_cast<size_t>(i)].inputs)
      users[static_cast<size_t>(v)].push_back(i);
  for (size_t gi = 0; gi < plan.groups.size(); ++gi) {
    FusionGroup& grp = plan.groups[gi];
    for (int i : grp.nodes) {
      const ir::Node& n = g.nodes[static_cast<size_t>(i)];
      for (int v : n.inputs) {
        const int p = producer[static_cast<size_t>(v)];
        const bool inside = p >= 0 && group_of[static_cast<size_t>(p)] == static_cast<int>(gi);
        if (!inside && std::find(grp.inputs.begin(), grp.inputs.end(), v) == grp.inputs.end())
          grp.inputs.push_back(v);
      }
      const int out = n.outputs[0];
      bool escapes = is_result[static_cast<size_t>(out)];
      for (int u : users[static_cast<size_t>(out)])
        escapes |= group_of[static_cast<size_t>(u)] != static_cast<int>(gi);
      if (escapes) grp.outputs.push_back(out);
    }
  }

  // The schedule: items are groups and unfused nodes; Kahn's algorithm, earliest original
  // node first, with side-effecting nodes chained in program order.
  const int num_groups = static_cast<int>(plan.groups.size());
  auto item_of = [&](int node) {
    const int gi = group_of[static_cast<size_t>(node)];
    return gi >= 0 ? gi : num_groups + node;
  };
  const int num_items = num_groups + num_nodes;
  std::vector<std::set<int>> succ(static_cast<size_t>(num_items));
  std::vector<int> indegree(static_cast<size_t>(num_items), 0);
  std::vector<int> first(static_cast<size_t>(num_items), -1);
  auto edge = [&](int a, int b) {
    if (a != b && succ[static_cast<size_t>(a)].insert(b).second) ++indegree[static_cast<size_t>(b)];
  };
  int last_effect = -1;
  for (int i = 0; i < num_nodes; ++i) {
    const int it = item_of(i);
    if (first[static_cast<size_t>(it)] < 0) first[static_cast<size_t>(it)] = i;
    for (int v : g.nodes[static_cast<size_t>(i)].inputs) {
      const int p = producer[static_cast<size_t>(v)];
      if (p >= 0) edge(item_of(p), it);
    }
    if (has_side_effect(g.nodes[static_cast<size_t>(i)])) {
      if (last_effect >= 0) edge(item_of(last_effect), it);
      last_effect = i;
    }
  }
  using Entry = std::pair<int, int>;  // (first node, item)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> ready;
  for (int it = 0; it < num_items; ++it)
    if (first[static_cast<size_t>(it)] >= 0 && indegree[static_cast<size_t>(it)] == 0)
      ready.push({first[static_cast<size_t>(it)], it});
  while (!ready.empty()) {
    const int it = ready.top().second;
    ready.pop();
    plan.steps.push_back(it < num_groups ? Step{it, -1} : Step{-1, it - num_groups});
    for (int s : succ[static_cast<size_t>(it)])
      if (--indegree[static_cast<size_t>(s)] == 0) ready.push({first[static_cast<size_t>(s)], s});
  }
  KILN_ASSERT(plan.steps.size() ==
                  static_cast<size_t>(num_groups) +
                      static_cast<size_t>(std::count(group_of.begin(), group_of.end(), -1)),
              "fusion: the schedule of '{}' has a cycle", g.name);
  return plan;
}

}  // namespace kiln::jit
