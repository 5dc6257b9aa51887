#include <kiln/jit/graph_util.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include <kiln/core/registry.h>

namespace kiln::jit {
namespace {

bool is_region_node(const ir::Node& n) {
  return !n.subgraphs.empty();
}

// Whether pred holds for a node of any region nested in n.
template <class Pred>
bool any_in_regions(const ir::Node& n, Pred&& pred) {
  for (const auto& sub : n.subgraphs)
    for (const ir::Node& inner : sub->nodes)
      if (pred(inner)) return true;
  return false;
}

bool bits_equal(double a, double b) {
  return std::bit_cast<uint64_t>(a) == std::bit_cast<uint64_t>(b);
}

}  // namespace

bool is_random_draw(const ir::Node& n) {
  if (is_region_node(n)) return false;
  const OpDef* op = registry().find(n.op);
  return op != nullptr && op->has(kStateful);
}

bool has_side_effects(const ir::Node& n) {
  if (n.op == "assign_variable" || is_random_draw(n)) return true;
  return any_in_regions(n, [](const ir::Node& inner) { return has_side_effects(inner); });
}

bool is_stateful(const ir::Node& n) {
  if (n.op == "read_variable" || has_side_effects(n)) return true;
  return any_in_regions(n, [](const ir::Node& inner) { return is_stateful(inner); });
}

std::vector<int64_t> assigned_variables(const ir::Node& n) {
  std::vector<int64_t> out;
  if (n.op == "assign_variable") out.push_back(n.attrs.i("var"));
  for (const auto& sub : n.subgraphs)
    for (const ir::Node& inner : sub->nodes)
      for (int64_t v : assigned_variables(inner))
        out.push_back(v);
  return out;
}

std::vector<int> definers(const ir::Graph& g) {
  std::vector<int> def(g.types.size(), -1);
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (int v : g.nodes[i].outputs)
      def[static_cast<size_t>(v)] = static_cast<int>(i);
  return def;
}

std::vector<int> identity_substitution(const ir::Graph& g) {
  std::vector<int> s(g.types.size());
  for (size_t i = 0; i < s.size(); ++i)
    s[i] = static_cast<int>(i);
  return s;
}

bool substitute(ir::Graph& g, const std::vector<int>& subst) {
  auto resolve = [&](int v) {
    // Chains are short (each step points to an earlier definition), so no cycle is possible.
    while (subst[static_cast<size_t>(v)] != v)
      v = subst[static_cast<size_t>(v)];
    return v;
  };
  bool changed = false;
  auto apply = [&](std::vector<int>& ids) {
    for (int& v : ids) {
      const int r = resolve(v);
      changed |= r != v;
      v = r;
    }
  };
  for (ir::Node& n : g.nodes)
    apply(n.inputs);
  apply(g.results);
  return changed;
}

void compact(ir::Graph& g) {
  constexpr int kNone = -1;
  std::vector<int> renum(g.types.size(), kNone);
  std::vector<TensorType> types;
  types.reserve(g.types.size());
  auto define = [&](int& v) {
    KILN_ASSERT(renum[static_cast<size_t>(v)] == kNone, "jit::compact: %{} is defined twice", v);
    renum[static_cast<size_t>(v)] = static_cast<int>(types.size());
    types.push_back(g.types[static_cast<size_t>(v)]);
    v = renum[static_cast<size_t>(v)];
  };
  auto use = [&](int& v) {
    KILN_ASSERT(renum[static_cast<size_t>(v)] != kNone, "jit::compact: %{} is used undefined", v);
    v = renum[static_cast<size_t>(v)];
  };
  for (int& v : g.params)
    define(v);
  for (ir::Node& n : g.nodes) {
    for (int& v : n.inputs)
      use(v);
    for (int& v : n.outputs)
      define(v);
  }
  for (int& v : g.results)
    use(v);
  g.types = std::move(types);

  // Constants: keep those still referred to, in their old order.
  std::vector<int64_t> cnum(g.constants.size(), kNone);
  for (const ir::Node& n : g.nodes)
    if (n.op == "constant") cnum[static_cast<size_t>(n.attrs.i("index"))] = 0;
  std::vector<Tensor> constants;
  for (size_t i = 0; i < cnum.size(); ++i) {
    if (cnum[i] == kNone) continue;
    cnum[i] = static_cast<int64_t>(constants.size());
    constants.push_back(std::move(g.constants[i]));
  }
  g.constants = std::move(constants);
  for (ir::Node& n : g.nodes)
    if (n.op == "constant") n.attrs.set("index", cnum[static_cast<size_t>(n.attrs.i("index"))]);
}

ir::Graph deep_copy(const ir::Graph& g) {
  ir::Graph out = g;
  for (ir::Node& n : out.nodes)
    for (auto& sub : n.subgraphs)
      sub = std::make_shared<ir::Graph>(deep_copy(*sub));
  return out;
}

bool fully_known(const TensorType& t) {
  return std::none_of(t.shape.begin(), t.shape.end(), [](int64_t d) { return d < 0; });
}

bool is_static_matrix_product(const ir::Graph& g, const ir::Node& n) {
  if (n.op != "matmul" || n.inputs.size() != 2 || n.outputs.size() != 1) return false;
  const TensorType& a = g.types[static_cast<size_t>(n.inputs[0])];
  const TensorType& b = g.types[static_cast<size_t>(n.inputs[1])];
  const TensorType& out = g.types[static_cast<size_t>(n.outputs[0])];
  return a.shape.rank() == 2 && b.shape.rank() == 2 && fully_known(a) && fully_known(b) &&
         a.shape[1] == b.shape[0] && out.shape == Shape{a.shape[0], b.shape[1]};
}

bool identical(const Attrs& a, const Attrs& b) {
  const auto& x = a.items();
  const auto& y = b.items();
  if (x.size() != y.size()) return false;
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i].first != y[i].first || x[i].second.index() != y[i].second.index()) return false;
    const auto* dx = std::get_if<double>(&x[i].second);
    if (dx ? !bits_equal(*dx, std::get<double>(y[i].second)) : x[i].second != y[i].second)
      return false;
  }
  return true;
}

bool identical(const Tensor& a, const Tensor& b) {
  if (a.get() == b.get()) return true;
  if (!(a.type() == b.type())) return false;
  return visit_dtype(a.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const std::vector<T> x = a.to_vector<T>(), y = b.to_vector<T>();
    if constexpr (std::is_floating_point_v<T>) {
      // Bit patterns: 0.0 and -0.0 are different constants, equal NaNs the same one.
      return x.empty() || std::memcmp(x.data(), y.data(), x.size() * sizeof(T)) == 0;
    } else {
      return x == y;
    }
  });
}

}  // namespace kiln::jit
