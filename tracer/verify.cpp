// The Graph IR verifier: every id in range, each value defined once and before its uses,
// structural ops (constant, read_variable, assign_variable) consistent with the graph's
// constants and variables, every other op known to the registry with its input count, and
// output types that agree with the registry's inference (a dim of -1 matches any dim).

#include <kiln/core/registry.h>
#include <kiln/tracer/graph.h>

namespace kiln::ir {
namespace {

std::string type_str(const TensorType& t) {
  std::string s(name(t.dtype));
  s += '[';
  for (size_t i = 0; i < t.shape.size(); ++i) {
    if (i) s += ',';
    s += t.shape[i] == -1 ? std::string("?") : std::to_string(t.shape[i]);
  }
  return s + ']';
}

// Same dtype and rank, and each pair of dims equal or one of them unknown (-1).
bool compatible(const TensorType& a, const TensorType& b) {
  if (a.dtype != b.dtype || a.shape.size() != b.shape.size()) return false;
  for (size_t i = 0; i < a.shape.size(); ++i)
    if (a.shape[i] != b.shape[i] && a.shape[i] != -1 && b.shape[i] != -1) return false;
  return true;
}

bool well_formed(const TensorType& t) {
  if (static_cast<int>(t.dtype) >= kNumDTypes) return false;
  for (int64_t d : t.shape)
    if (d < -1) return false;
  return true;
}

constexpr int kUndefined = -2;
constexpr int kParam = -1;

class Verifier {
 public:
  explicit Verifier(const Graph& g) : g_(g), def_(g.types.size(), kUndefined) {}

  void run() {
    for (size_t id = 0; id < g_.types.size(); ++id)
      KILN_CHECK(well_formed(g_.types[id]), "verify: %{} has a malformed type {}", id,
                 type_str(g_.types[id]));
    for (size_t i = 0; i < g_.variables.size(); ++i)
      KILN_CHECK(well_formed(g_.variables[i].type),
                 "verify: variable {} ('{}') has a malformed "
                 "type {}",
                 i, g_.variables[i].name, type_str(g_.variables[i].type));
    for (size_t i = 0; i < g_.constants.size(); ++i)
      KILN_CHECK(g_.constants[i].defined() && !g_.constants[i].is_symbolic(),
                 "verify: constant {} has no value", i);
    for (size_t i = 0; i < g_.params.size(); ++i) {
      const int id = g_.params[i];
      const std::string where = fmt::format("verify: parameter {}", i);
      check_range(id, where);
      check_fresh(id, where);
      def_[static_cast<size_t>(id)] = kParam;
    }
    for (size_t i = 0; i < g_.nodes.size(); ++i)
      check_node(i);
    for (size_t i = 0; i < g_.results.size(); ++i) {
      const int id = g_.results[i];
      const std::string where = fmt::format("verify: result {}", i);
      check_range(id, where);
      KILN_CHECK(def_[static_cast<size_t>(id)] != kUndefined, "{}: %{} is never defined", where,
                 id);
    }
  }

 private:
  const Graph& g_;
  std::vector<int> def_;  // per value: kUndefined, kParam, or the index of the defining node

  const TensorType& type(int id) const { return g_.types[static_cast<size_t>(id)]; }

  void check_range(int id, const std::string& where) const {
    KILN_CHECK(id >= 0 && static_cast<size_t>(id) < g_.types.size(),
               "{}: %{} is out of range (the graph has {} values)", where, id, g_.types.size());
  }

  std::string definer(int id) const {
    const int d = def_[static_cast<size_t>(id)];
    if (d == kParam) return "a parameter";
    return fmt::format("node {} ({})", d, g_.nodes[static_cast<size_t>(d)].op);
  }

  void check_fresh(int id, const std::string& where) const {
    KILN_CHECK(def_[static_cast<size_t>(id)] == kUndefined,
               "{}: %{} is defined twice (already defined by {})", where, id, definer(id));
  }

  // The integer attribute `key` of a structural node, in [0, count).
  size_t index_attr(const Node& n, const std::string& where, const char* key, const char* what,
                    size_t count) const {
    const AttrValue* v = n.attrs.find(key);
    KILN_CHECK(v && std::holds_alternative<int64_t>(*v), "{}: needs an integer attribute '{}'",
               where, key);
    const int64_t i = std::get<int64_t>(*v);
    KILN_CHECK(i >= 0 && static_cast<uint64_t>(i) < count,
               "{}: attribute {} = {} is out of range (the graph has {} {})", where, key, i, count,
               what);
    return static_cast<size_t>(i);
  }

  void check_arity(const Node& n, const std::string& where, size_t inputs, size_t outputs) const {
    KILN_CHECK(n.inputs.size() == inputs, "{}: expects {} inputs, got {}", where, inputs,
               n.inputs.size());
    KILN_CHECK(n.outputs.size() == outputs, "{}: has {} outputs, expected {}", where,
               n.outputs.size(), outputs);
  }

  void check_node(size_t index) {
    const Node& n = g_.nodes[index];
    const std::string where = fmt::format("verify: node {} ({})", index, n.op);
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      const int id = n.inputs[k];
      check_range(id, fmt::format("{}: input {}", where, k));
      KILN_CHECK(def_[static_cast<size_t>(id)] != kUndefined,
                 "{}: input {} uses %{} before it is defined", where, k, id);
    }
    for (size_t k = 0; k < n.outputs.size(); ++k) {
      const int id = n.outputs[k];
      check_range(id, fmt::format("{}: output {}", where, k));
      check_fresh(id, where);
      for (size_t j = 0; j < k; ++j)
        KILN_CHECK(n.outputs[j] != id, "{}: %{} is defined twice (outputs {} and {})", where, id, j,
                   k);
    }

    if (n.op == "constant") {
      check_arity(n, where, 0, 1);
      const size_t c = index_attr(n, where, "index", "constants", g_.constants.size());
      const TensorType have = g_.constants[c].type();
      KILN_CHECK(have == type(n.outputs[0]),
                 "{}: constant {} has type {} but the node's output %{} has type {}", where, c,
                 type_str(have), n.outputs[0], type_str(type(n.outputs[0])));
    } else if (n.op == "read_variable") {
      check_arity(n, where, 0, 1);
      const size_t v = index_attr(n, where, "var", "variables", g_.variables.size());
      const VariableSlot& slot = g_.variables[v];
      KILN_CHECK(slot.type == type(n.outputs[0]),
                 "{}: variable {} ('{}') has type {} but the node's output %{} has type {}", where,
                 v, slot.name, type_str(slot.type), n.outputs[0], type_str(type(n.outputs[0])));
    } else if (n.op == "assign_variable") {
      check_arity(n, where, 1, 0);
      const size_t v = index_attr(n, where, "var", "variables", g_.variables.size());
      const VariableSlot& slot = g_.variables[v];
      KILN_CHECK(compatible(slot.type, type(n.inputs[0])),
                 "{}: assigns %{} of type {} to variable {} ('{}') of type {}", where, n.inputs[0],
                 type_str(type(n.inputs[0])), v, slot.name, type_str(slot.type));
    } else {
      check_primitive(n, where);
    }
    for (int id : n.outputs)
      def_[static_cast<size_t>(id)] = static_cast<int>(index);
  }

  void check_primitive(const Node& n, const std::string& where) const {
    const OpDef* op = registry().find(n.op);
    KILN_CHECK(op != nullptr && op->infer() != nullptr, "{}: unknown op '{}'", where, n.op);
    KILN_CHECK(op->num_inputs() < 0 || static_cast<size_t>(op->num_inputs()) == n.inputs.size(),
               "{}: expects {} inputs, got {}", where, op->num_inputs(), n.inputs.size());
    std::vector<TensorType> in;
    in.reserve(n.inputs.size());
    for (int id : n.inputs)
      in.push_back(type(id));
    std::vector<TensorType> out;
    try {
      out = op->infer()(*op, in, n.attrs);
    } catch (const std::exception& e) {
      KILN_FAIL("{}: shape inference fails: {}", where, e.what());
    }
    KILN_CHECK(out.size() == n.outputs.size(), "{}: inference gives {} outputs, the node has {}",
               where, out.size(), n.outputs.size());
    for (size_t k = 0; k < out.size(); ++k)
      KILN_CHECK(compatible(out[k], type(n.outputs[k])),
                 "{}: output {} (%{}) has type {} but inference gives {}", where, k, n.outputs[k],
                 type_str(type(n.outputs[k])), type_str(out[k]));
  }
};

}  // namespace

void verify(const Graph& g) {
  Verifier(g).run();
}

}  // namespace kiln::ir
