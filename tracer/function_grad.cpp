// Calls of a ConcreteFunction under a GradientTape: one tape entry whose VJP is a traced,
// cached gradient function (TF's function gradient), so a compiled function is
// differentiated by another compiled function rather than primitive by primitive.
#include <atomic>

#include <kiln/autograd/tape.h>
#include <kiln/tracer/control_flow_grad.h>
#include <kiln/tracer/function.h>

namespace kiln {

namespace detail {
struct ConcreteState {
  bool jit = false;
  std::once_flag compile_once;
  std::shared_ptr<const tracer::CompiledGraph> compiled;
  std::mutex mu;
  ConcreteFunction backward;
};
}  // namespace detail

namespace tracer {
namespace {
std::atomic<Compiler> g_compiler{nullptr};
}
void set_compiler(Compiler c) {
  g_compiler.store(c);
}
Compiler compiler() {
  return g_compiler.load();
}
}  // namespace tracer

namespace {

// The floating variables a graph reads, in the order of its variable slots.
std::vector<Variable> floating_variables(const ir::Graph& g) {
  std::vector<Variable> out;
  for (const ir::VariableSlot& slot : g.variables)
    if (slot.var != nullptr && is_floating(slot.type.dtype)) out.emplace_back(slot.var);
  return out;
}

}  // namespace

ConcreteFunction::ConcreteFunction(std::shared_ptr<const ir::Graph> graph, bool jit)
    : graph_(std::move(graph)), state_(std::make_shared<detail::ConcreteState>()) {
  state_->jit = jit;
}

const tracer::CompiledGraph* ConcreteFunction::executable() const {
  if (!state_->jit) return nullptr;
  std::call_once(state_->compile_once, [&] {
    if (tracer::Compiler c = tracer::compiler()) state_->compiled = c(*graph_);
  });
  return state_->compiled.get();
}

bool ConcreteFunction::compiled() const {
  return defined() && executable() != nullptr;
}

std::vector<Tensor> ConcreteFunction::run(const std::vector<Tensor>& inputs) const {
  if (const tracer::CompiledGraph* exe = executable()) return exe->run(inputs);
  return tracer::interpret(*graph_, inputs);
}

std::vector<Tensor> ConcreteFunction::call_flat(const std::vector<Tensor>& inputs) const {
  KILN_CHECK(defined(), "ConcreteFunction: calling an empty concrete function");
  // Inside another trace the call is inlined: its primitives become nodes there (and a tape
  // in that trace records them).
  if (tracer::TraceContext::current() != nullptr) return tracer::interpret(*graph_, inputs);
  if (GradientTape::active().empty()) return run(inputs);
  return call_recorded(inputs);
}

std::vector<Tensor> ConcreteFunction::call_recorded(const std::vector<Tensor>& inputs) const {
  const std::vector<GradientTape*> tapes = GradientTape::recording_here();
  bool wanted = !floating_variables(*graph_).empty();
  for (GradientTape* t : tapes)
    for (const Tensor& x : inputs)
      wanted |= t->is_watching(x);
  if (tapes.empty() || !wanted) return run(inputs);
  if (tracer::has_side_effects(*graph_)) return tracer::interpret(*graph_, inputs);

  std::vector<Tensor> outputs;
  {
    std::vector<std::unique_ptr<GradientTape::Pause>> paused;
    for (GradientTape* t : tapes)
      paused.push_back(std::make_unique<GradientTape::Pause>(t));
    outputs = run(inputs);
  }
  // Fresh output ids: a result that is an input (or a variable's value) passed through must
  // not be confused with it on the tape.
  for (Tensor& t : outputs)
    t = Tensor::view_of(t, t.shape(), t.strides(), t.offset());
  // The tapes see the variable reads (and decide, by their watch rules, whether the reads
  // get gradients); the entry's inputs are the floating arguments and those reads.
  std::vector<Tensor> entry_inputs;
  for (const Tensor& x : inputs)
    if (is_floating(x.dtype())) entry_inputs.push_back(x);
  for (const Variable& v : floating_variables(*graph_))
    entry_inputs.push_back(v.value());
  const ConcreteFunction self = *this;
  auto vjp = [self, inputs, outputs](std::span<const Tensor> og) {
    std::vector<Tensor> args = inputs;
    for (size_t k = 0; k < outputs.size(); ++k)
      if (is_floating(outputs[k].dtype())) args.push_back(og[k]);
    return self.gradient_function().call_flat(args);
  };
  for (GradientTape* t : tapes)
    t->record_closure(entry_inputs, outputs, vjp);
  return outputs;
}

ConcreteFunction ConcreteFunction::gradient_function() const {
  KILN_CHECK(defined(), "ConcreteFunction: empty concrete function");
  std::lock_guard<std::mutex> lock(state_->mu);
  if (state_->backward.defined()) return state_->backward;
  const ir::Graph& g = *graph_;
  std::vector<TensorType> params;
  for (int p : g.params)
    params.push_back(g.types[p]);
  const size_t num_inputs = params.size();
  for (int r : g.results)
    if (is_floating(g.types[r].dtype)) params.push_back(g.types[r]);
  const std::shared_ptr<const ir::Graph> forward = graph_;
  auto body = [forward, num_inputs](const std::vector<Tensor>& args) {
    const std::vector<Tensor> xs(args.begin(), args.begin() + static_cast<long>(num_inputs));
    const std::vector<Tensor> og(args.begin() + static_cast<long>(num_inputs), args.end());
    std::vector<Tensor> sources;
    for (const Tensor& x : xs)
      if (is_floating(x.dtype())) sources.push_back(x);
    const std::vector<Variable> vars = floating_variables(*forward);
    GradientTape tape;
    for (const Tensor& x : sources)
      tape.watch(x);
    for (const Variable& v : vars)
      tape.watch(v);
    std::vector<Tensor> ys = tracer::interpret(*forward, xs);
    std::vector<Tensor> targets;
    for (const Tensor& y : ys)
      if (is_floating(y.dtype())) targets.push_back(y);
    return tape.gradient(targets, sources, vars, og, Unconnected::zero);
  };
  state_->backward =
      ConcreteFunction(std::make_shared<const ir::Graph>(tracer::trace(
                           g.name + "/grad", params, body, /*allow_variable_creation=*/false)),
                       state_->jit);
  return state_->backward;
}

}  // namespace kiln
