#pragma once

// Tracing: while a trace is recorded, a TraceContext on this thread redirects every
// primitive into a graph node (DESIGN.md section 2.5). Tensor arguments become symbolic
// tensors (no data; they carry their graph value); concrete tensors met during the trace
// become constants; Variable reads and assigns become ordered read_variable and
// assign_variable nodes; random draws keep attributes that the interpreter replaces with
// freshly reserved Philox counters on every call.

#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include <kiln/core/dispatch.h>
#include <kiln/tracer/graph.h>

namespace kiln::tracer {

class TraceContext;

// What a symbolic tensor carries: its trace (by serial number, never reused, so a tensor
// leaked from a finished trace is recognized as foreign) and its value id there.
struct SymbolicValue : TensorExtension {
  SymbolicValue(uint64_t t, int v) : trace(t), value(v) {}
  uint64_t trace;
  int value;
};

class TraceContext : public DispatchHook {
 public:
  // `allow_variable_creation`: true on a function's first trace only (TF's rule).
  TraceContext(std::string name, bool allow_variable_creation);
  // A region (a cond branch or a while body) traced inside `parent`: symbolic tensors of
  // enclosing traces become captured parameters, variables stay the outermost graph's.
  TraceContext(std::string name, TraceContext* parent);

  // The trace being recorded on this thread, or null.
  static TraceContext* current();
  // Makes `ctx` current (and installs it as a hook) for the scope's lifetime.
  class Scope {
   public:
    explicit Scope(TraceContext* ctx);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    TraceContext* saved_;
    HookScope hook_;
  };

  // Values of the parent trace this region captured, in the order of the extra params.
  const std::vector<int>& captures() const { return captures_; }
  // The enclosing traces' tensors behind those captures, in the same order.
  const std::vector<Tensor>& captured_tensors() const { return captured_tensors_; }
  // The outermost graph's variable slots (region graphs refer to them by index).
  const std::vector<ir::VariableSlot>& variables() const { return root_->graph_.variables; }

  Tensor add_param(const TensorType& type);
  // The value id of `t` in this trace: its own symbolic value, or a new constant.
  int value_of(const Tensor& t);
  Tensor symbolic(int value) const;
  void set_results(const std::vector<Tensor>& results);
  ir::Graph& graph() { return graph_; }

  bool redirect(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
                std::vector<Tensor>& outputs) override;
  bool redirect_variable_read(VariableImpl& var, Tensor& value) override;
  bool redirect_variable_assign(VariableImpl& var, const Tensor& value) override;
  bool captures_state() const override { return true; }
  void on_variable_create(const std::string& name) override;

 private:
  int variable_index(VariableImpl& var);
  bool encloses(uint64_t trace) const;

  ir::Graph graph_;
  uint64_t serial_;
  bool allow_variable_creation_;
  TraceContext* parent_ = nullptr;
  TraceContext* root_ = this;
  std::vector<int> captures_;
  std::vector<Tensor> captured_tensors_;
  std::unordered_map<uint64_t, int> captured_;   // enclosing symbolic tensor id -> param
  std::unordered_map<uint64_t, int> constants_;  // concrete tensor id -> value
  std::unordered_map<const VariableImpl*, int> variables_;
  std::vector<Tensor> keep_alive_;  // constants' tensors, so their ids stay unique
};

// Traces fn(params) into a graph. The global RNG state is left as it was: tracing draws
// nothing.
ir::Graph trace(const std::string& name, const std::vector<TensorType>& params,
                const std::function<std::vector<Tensor>(const std::vector<Tensor>&)>& fn,
                bool allow_variable_creation);

// Whether t has spec's dtype and rank and its size in every known (non -1) dim.
bool fits(const TensorType& spec, const Tensor& t);

// Runs a graph with the eager kernels (the reference semantics of every compiled function).
// `variables`: the outermost graph's variables, when g is a region (null: g's own).
std::vector<Tensor> interpret(const ir::Graph& g, const std::vector<Tensor>& inputs,
                              const std::vector<ir::VariableSlot>* variables = nullptr);

// Runs one node of g on the values computed so far (vals, indexed by value id), as the
// interpreter does: the compiled Executable runs the nodes it does not fuse this way.
void run_node(const ir::Graph& g, const ir::Node& n, std::vector<Tensor>& vals,
              const std::vector<ir::VariableSlot>& vars);

}  // namespace kiln::tracer
