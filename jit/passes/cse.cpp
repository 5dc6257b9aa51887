// Common subexpression elimination: a node with the same op, the same attributes (doubles
// compared by bit pattern) and the same inputs as an earlier node is dropped, and its outputs
// are replaced by the earlier node's. Constant nodes are the same when their tensors have the
// same type and bit-identical elements (so 0.0 and -0.0 stay apart).
//
//   %1 = exp(%0) : f32[3]                   %1 = exp(%0) : f32[3]
//   %2 = exp(%0) : f32[3]          ->       %2 = add(%1, %1) : f32[3]
//   %3 = add(%1, %2) : f32[3]
//
// Operands of commutative ops (registry kCommutative) are compared as a sorted pair, except
// for maximum and minimum: they break a tie of 0.0 and -0.0 by operand order.
// Never merged:
//   - random draws (each reserves its own Philox counters) and assign_variable;
//   - cond and while nodes (their regions are not compared);
//   - two read_variable of the same variable with an assign to it in between (also an assign
//     inside a region of a node in between). Reads with no assign in between are merged.
// Assumes: a verified graph. Guarantees: results keep their types.

#include <algorithm>
#include <bit>
#include <unordered_map>

#include <kiln/core/registry.h>
#include <kiln/jit/graph_util.h>
#include <kiln/jit/pass.h>

namespace kiln::jit {
namespace {

// What identifies a node for CSE: its op, attributes, inputs (sorted for commutative ops),
// and for a variable read the number of assigns to that variable before it.
struct Key {
  const ir::Node* node;
  std::vector<int> inputs;
  int64_t epoch = 0;
};

size_t mix(size_t h, size_t v) {
  return h ^ (v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2));
}

size_t hash_attr(const AttrValue& v) {
  return std::visit(
      [](const auto& x) -> size_t {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, double>) {
          return std::hash<uint64_t>()(std::bit_cast<uint64_t>(x));
        } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
          size_t h = x.size();
          for (int64_t e : x)
            h = mix(h, std::hash<int64_t>()(e));
          return h;
        } else if constexpr (std::is_same_v<T, DType>) {
          return static_cast<size_t>(x);
        } else {
          return std::hash<T>()(x);
        }
      },
      v);
}

constexpr int64_t kHashedElements = 64;

class Eliminator {
 public:
  explicit Eliminator(ir::Graph& g) : g_(g), subst_(identity_substitution(g)) {}

  bool run() {
    std::unordered_multimap<size_t, Key> seen;
    std::unordered_map<int64_t, int64_t> epoch;  // variable -> assigns so far
    std::vector<bool> dead(g_.nodes.size());
    bool changed = false;
    for (size_t i = 0; i < g_.nodes.size(); ++i) {
      ir::Node& n = g_.nodes[i];
      for (int& v : n.inputs)
        while (subst_[static_cast<size_t>(v)] != v)
          v = subst_[static_cast<size_t>(v)];
      for (int64_t var : assigned_variables(n))
        ++epoch[var];
      if (!mergeable(n)) continue;
      Key key{&n, n.inputs, n.op == "read_variable" ? epoch[n.attrs.i("var")] : 0};
      if (commutative(n)) std::sort(key.inputs.begin(), key.inputs.end());
      const size_t h = hash(key);
      const ir::Node* same = nullptr;
      for (auto [it, end] = seen.equal_range(h); it != end && !same; ++it)
        if (equal(it->second, key)) same = it->second.node;
      if (!same) {
        seen.emplace(h, std::move(key));
        continue;
      }
      for (size_t k = 0; k < n.outputs.size(); ++k)
        subst_[static_cast<size_t>(n.outputs[k])] = same->outputs[k];
      dead[i] = true;
      changed = true;
    }
    if (!changed) return false;
    substitute(g_, subst_);
    std::vector<ir::Node> kept;
    for (size_t i = 0; i < g_.nodes.size(); ++i)
      if (!dead[i]) kept.push_back(std::move(g_.nodes[i]));
    g_.nodes = std::move(kept);
    compact(g_);
    return true;
  }

 private:
  ir::Graph& g_;
  std::vector<int> subst_;

  static bool mergeable(const ir::Node& n) {
    if (n.outputs.empty() || !n.subgraphs.empty()) return false;
    if (n.op == "read_variable" || n.op == "constant") return true;
    return !is_stateful(n);
  }

  static bool commutative(const ir::Node& n) {
    if (n.op == "maximum" || n.op == "minimum") return false;
    const OpDef* op = registry().find(n.op);
    return op && op->has(kCommutative);
  }

  const Tensor& constant(const ir::Node& n) const {
    return g_.constants[static_cast<size_t>(n.attrs.i("index"))];
  }

  size_t hash(const Key& k) const {
    size_t h = std::hash<std::string>()(k.node->op);
    h = mix(h, static_cast<size_t>(k.epoch));
    for (int v : k.inputs)
      h = mix(h, static_cast<size_t>(v));
    if (k.node->op == "constant") {
      // The type, and the elements of small constants (equal() compares them all).
      const Tensor& t = constant(*k.node);
      h = mix(h, static_cast<size_t>(t.dtype()));
      for (int64_t d : t.shape())
        h = mix(h, static_cast<size_t>(d));
      if (t.numel() <= kHashedElements)
        for (double e : t.to_vector<double>())
          h = mix(h, std::hash<uint64_t>()(std::bit_cast<uint64_t>(e)));
      return h;
    }
    for (const auto& [name, v] : k.node->attrs.items())
      h = mix(mix(h, std::hash<std::string>()(name)), hash_attr(v));
    return h;
  }

  bool equal(const Key& a, const Key& b) const {
    const ir::Node& x = *a.node;
    const ir::Node& y = *b.node;
    if (x.op != y.op || a.inputs != b.inputs || a.epoch != b.epoch ||
        x.outputs.size() != y.outputs.size())
      return false;
    for (size_t k = 0; k < x.outputs.size(); ++k)
      if (!(g_.types[static_cast<size_t>(x.outputs[k])] ==
            g_.types[static_cast<size_t>(y.outputs[k])]))
        return false;
    if (x.op == "constant") return identical(constant(x), constant(y));
    return identical(x.attrs, y.attrs);
  }
};

bool eliminate(ir::Graph& g) {
  return Eliminator(g).run();
}

}  // namespace

Pass cse() {
  return Pass("cse", eliminate);
}

}  // namespace kiln::jit
