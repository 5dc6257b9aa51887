#include <kiln/tracer/trace.h>

#include <atomic>

#include <kiln/core/random.h>

namespace kiln::tracer {

namespace {
thread_local TraceContext* t_current = nullptr;
uint64_t next_serial() {
  static std::atomic<uint64_t> n{1};
  return n.fetch_add(1);
}
}  // namespace

TraceContext::TraceContext(std::string name, bool allow_variable_creation)
    : serial_(next_serial()), allow_variable_creation_(allow_variable_creation) {
  graph_.name = std::move(name);
}

TraceContext::TraceContext(std::string name, TraceContext* parent)
    : serial_(next_serial()),
      allow_variable_creation_(parent->allow_variable_creation_),
      parent_(parent),
      root_(parent->root_) {
  graph_.name = std::move(name);
}

TraceContext* TraceContext::current() {
  return t_current;
}

TraceContext::Scope::Scope(TraceContext* ctx) : saved_(t_current), hook_(ctx) {
  t_current = ctx;
}
TraceContext::Scope::~Scope() {
  t_current = saved_;
}

bool TraceContext::encloses(uint64_t trace) const {
  for (const TraceContext* p = parent_; p; p = p->parent_)
    if (p->serial_ == trace) return true;
  return false;
}

Tensor TraceContext::symbolic(int value) const {
  return Tensor::symbolic(graph_.types[value].shape, graph_.types[value].dtype,
                          std::make_shared<SymbolicValue>(serial_, value));
}

Tensor TraceContext::add_param(const TensorType& type) {
  const int v = graph_.add_value(type);
  graph_.params.push_back(v);
  return symbolic(v);
}

int TraceContext::value_of(const Tensor& t) {
  if (t.is_symbolic()) {
    const auto* s = dynamic_cast<const SymbolicValue*>(t.extension());
    if (s != nullptr && s->trace != serial_ && encloses(s->trace)) {
      // A value of an enclosing trace used in this region: capture it as a parameter.
      auto it = captured_.find(t.id());
      if (it != captured_.end()) return it->second;
      const int outer = parent_->value_of(t);
      const int v = graph_.add_value(t.type());
      graph_.params.push_back(v);
      captures_.push_back(outer);
      captured_tensors_.push_back(t);
      captured_[t.id()] = v;
      return v;
    }
    KILN_CHECK(s != nullptr && s->trace == serial_,
               "function '{}': symbolic tensor {} belongs to another trace (a tensor from one "
               "traced function leaked into another); return it instead",
               graph_.name, t.type_str());
    return s->value;
  }
  auto it = constants_.find(t.id());
  if (it != constants_.end()) return it->second;
  // A concrete tensor captured from the enclosing scope becomes a constant.
  Tensor c = t.contiguous();
  const int v = graph_.add_value(c.type());
  graph_.nodes.push_back(ir::Node{
      "constant", {}, {v}, Attrs{{"index", static_cast<int64_t>(graph_.constants.size())}}, {}});
  graph_.constants.push_back(c);
  keep_alive_.push_back(t);
  constants_[t.id()] = v;
  return v;
}

bool TraceContext::redirect(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
                            std::vector<Tensor>& outputs) {
  ir::Node node{op.name(), {}, {}, attrs, {}};
  for (const Tensor& t : inputs)
    node.inputs.push_back(value_of(t));
  const std::vector<TensorType> types = infer_types(op, inputs, attrs);
  outputs.clear();
  for (const TensorType& t : types) {
    const int v = graph_.add_value(t);
    node.outputs.push_back(v);
    outputs.push_back(symbolic(v));
  }
  graph_.nodes.push_back(std::move(node));
  return true;
}

int TraceContext::variable_index(VariableImpl& var) {
  if (root_ != this) return root_->variable_index(var);
  auto it = variables_.find(&var);
  if (it != variables_.end()) return it->second;
  const Tensor cur = var.stored();
  const int index = static_cast<int>(graph_.variables.size());
  // The graph keeps its variables alive, as a captured resource handle does in TF.
  graph_.variables.push_back(ir::VariableSlot{var.name(), cur.type(), var.shared_from_this()});
  variables_[&var] = index;
  return index;
}

bool TraceContext::redirect_variable_read(VariableImpl& var, Tensor& value) {
  const int index = variable_index(var);
  const int v = graph_.add_value(root_->graph_.variables[index].type);
  graph_.nodes.push_back(
      ir::Node{"read_variable", {}, {v}, Attrs{{"var", static_cast<int64_t>(index)}}, {}});
  value = symbolic(v);
  return true;
}

bool TraceContext::redirect_variable_assign(VariableImpl& var, const Tensor& value) {
  const int index = variable_index(var);
  const int v = value_of(value);
  graph_.nodes.push_back(
      ir::Node{"assign_variable", {v}, {}, Attrs{{"var", static_cast<int64_t>(index)}}, {}});
  return true;
}

void TraceContext::on_variable_create(const std::string& name) {
  KILN_CHECK(allow_variable_creation_ && root_ == this,
             "function '{}': Variable '{}' is created during a trace other than the first (or in a "
             "cond/while_loop branch); "
             "create variables once (outside the function, or only on its first call)",
             graph_.name, name);
}

ir::Graph trace(const std::string& name, const std::vector<TensorType>& params,
                const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
                bool allow_variable_creation) {
  TraceContext ctx(name, allow_variable_creation);
  std::vector<Tensor> args;
  for (const TensorType& t : params)
    args.push_back(ctx.add_param(t));
  const random::State rng = random::state();
  std::vector<Tensor> results;
  try {
    // Hooks outside the trace (a tape around the first call, an enclosing trace) must not see
    // the symbolic ops: the enclosing trace inlines this function when it runs the graph.
    SuspendHooks hidden;
    TraceContext::Scope scope(&ctx);
    results = fn(args);
  } catch (...) {
    random::set_state(rng);
    throw;
  }
  random::set_state(rng);
  for (const Tensor& r : results) {
    KILN_CHECK(r.defined(), "function '{}': returned an undefined Tensor", name);
    ctx.graph().results.push_back(ctx.value_of(r));
  }
  return std::move(ctx.graph());
}

}  // namespace kiln::tracer
