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
  // `root_vars`: the outermost graph's variables, for a subgraph (null for the root).
  explicit Verifier(const Graph& g, const std::vector<VariableSlot>* root_vars = nullptr)
      : g_(g), vars_(root_vars ? *root_vars : g.variables), def_(g.types.size(), kUndefined) {}

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
  const std::vector<VariableSlot>& vars_;
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
      const size_t v = index_attr(n, where, "var", "variables", vars_.size());
      const VariableSlot& slot = vars_[v];
      KILN_CHECK(slot.type == type(n.outputs[0]),
                 "{}: variable {} ('{}') has type {} but the node's output %{} has type {}", where,
                 v, slot.name, type_str(slot.type), n.outputs[0], type_str(type(n.outputs[0])));
    } else if (n.op == "assign_variable") {
      check_arity(n, where, 1, 0);
      const size_t v = index_attr(n, where, "var", "variables", vars_.size());
      const VariableSlot& slot = vars_[v];
      KILN_CHECK(compatible(slot.type, type(n.inputs[0])),
                 "{}: assigns %{} of type {} to variable {} ('{}') of type {}", where, n.inputs[0],
                 type_str(type(n.inputs[0])), v, slot.name, type_str(slot.type));
    } else if (n.op == "cond" || n.op == "while") {
      check_control_flow(n, where);
    } else {
      check_primitive(n, where);
    }
    KILN_CHECK(n.subgraphs.empty() || n.op == "cond" || n.op == "while",
               "{}: only cond and while have regions", where);
    for (int id : n.outputs)
      def_[static_cast<size_t>(id)] = static_cast<int>(index);
  }

  // A subgraph's params must accept `args` (in order) and its results must give `results`.
  void check_region(const Node& n, const std::string& where, size_t r, const char* what,
                    const std::vector<TensorType>& args, const std::vector<TensorType>* results) {
    const Graph& sub = *n.subgraphs[r];
    try {
      Verifier(sub, &vars_).run();
    } catch (const Error& e) {
      KILN_FAIL("{}: in its {} region: {}", where, what, e.what());
    }
    KILN_CHECK(sub.params.size() == args.size(), "{}: the {} region takes {} values, given {}",
               where, what, sub.params.size(), args.size());
    for (size_t i = 0; i < args.size(); ++i)
      KILN_CHECK(compatible(sub.types[sub.params[i]], args[i]),
                 "{}: {} region parameter {} is {} but receives {}", where, what, i,
                 type_str(sub.types[sub.params[i]]), type_str(args[i]));
    if (!results) return;
    KILN_CHECK(sub.results.size() == results->size(),
               "{}: the {} region returns {} values, {} expected", where, what, sub.results.size(),
               results->size());
    for (size_t i = 0; i < results->size(); ++i)
      KILN_CHECK(compatible(sub.types[sub.results[i]], (*results)[i]),
                 "{}: {} region result {} is {} but {} is expected", where, what, i,
                 type_str(sub.types[sub.results[i]]), type_str((*results)[i]));
  }

  std::vector<TensorType> types_of(const std::vector<int>& ids, size_t from, size_t to) const {
    std::vector<TensorType> out;
    for (size_t i = from; i < to; ++i)
      out.push_back(type(ids[i]));
    return out;
  }

  void check_control_flow(const Node& n, const std::string& where) {
    KILN_CHECK(n.subgraphs.size() == 2 && n.subgraphs[0] && n.subgraphs[1],
               "{}: needs exactly two regions, has {}", where, n.subgraphs.size());
    const std::vector<TensorType> outs = types_of(n.outputs, 0, n.outputs.size());
    if (n.op == "cond") {
      KILN_CHECK(!n.inputs.empty(), "{}: needs a predicate input", where);
      const TensorType p = type(n.inputs[0]);
      KILN_CHECK(p.dtype == DType::boolean && p.shape.empty(),
                 "{}: the predicate must be a bool scalar, got {}", where, type_str(p));
      const int64_t k = n.attrs.has("then_inputs") ? n.attrs.i("then_inputs") : -1;
      KILN_CHECK(k >= 0 && static_cast<size_t>(k) < n.inputs.size(),
                 "{}: attribute then_inputs must be in [0, {})", where, n.inputs.size());
      check_region(n, where, 0, "then", types_of(n.inputs, 1, 1 + k), &outs);
      check_region(n, where, 1, "else", types_of(n.inputs, 1 + k, n.inputs.size()), &outs);
      return;
    }
    const int64_t nv = n.attrs.has("num_vars") ? n.attrs.i("num_vars") : -1;
    const int64_t nc = n.attrs.has("cond_inputs") ? n.attrs.i("cond_inputs") : -1;
    KILN_CHECK(nv >= 0 && nc >= 0 && static_cast<size_t>(nv + nc) <= n.inputs.size() &&
                   static_cast<size_t>(nv) == n.outputs.size(),
               "{}: attributes num_vars/cond_inputs do not fit {} inputs and {} outputs", where,
               n.inputs.size(), n.outputs.size());
    std::vector<TensorType> vars = types_of(n.inputs, 0, nv);
    for (size_t i = 0; i < vars.size(); ++i)
      KILN_CHECK(compatible(vars[i], outs[i]), "{}: loop variable {} is {} but output {} is {}",
                 where, i, type_str(vars[i]), i, type_str(outs[i]));
    std::vector<TensorType> cond_args = vars, body_args = vars;
    for (const auto& t : types_of(n.inputs, nv, nv + nc))
      cond_args.push_back(t);
    for (const auto& t : types_of(n.inputs, nv + nc, n.inputs.size()))
      body_args.push_back(t);
    const std::vector<TensorType> pred{{DType::boolean, Shape{}}};
    check_region(n, where, 0, "cond", cond_args, &pred);
    check_region(n, where, 1, "body", body_args, &vars);
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
