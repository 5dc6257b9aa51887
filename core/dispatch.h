#pragma once

#include <span>
#include <vector>

#include <kiln/core/registry.h>

namespace kiln {

class VariableImpl;  // autograd/variable.h

// A per-thread observer or redirector of op calls. A GradientTape observes (records each op
// that touches a watched tensor); a tracer redirects (appends a graph node instead of
// running a kernel). Hooks are stacked per thread; the innermost is asked first.
class DispatchHook {
 public:
  virtual ~DispatchHook() = default;
  // Return true after filling `outputs` to take the call over; the kernel then does not run.
  virtual bool redirect(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
                        std::vector<Tensor>& outputs) {
    return false;
  }
  // Called after the op produced `outputs` (by a kernel or by an inner hook's redirect).
  virtual void observe(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs,
                       std::span<const Tensor> outputs) {}
  // A Variable is being read. Return true after filling `value` to replace what the read
  // returns (a tracer returns a captured symbolic reference).
  virtual bool redirect_variable_read(VariableImpl& var, Tensor& value) { return false; }
  // A Variable was read and gave `value` (a tape watches trainable variables' reads).
  virtual void on_variable_read(VariableImpl& var, const Tensor& value) {}
  // A Variable is being assigned `value`. Return true to take the assign over (a tracer
  // records an ordered assign node instead of storing).
  virtual bool redirect_variable_assign(VariableImpl& var, const Tensor& value) { return false; }
  // Whether this hook captures state changes (a tracer does): Variable updates then run as
  // ops through the hooks instead of eagerly.
  virtual bool captures_state() const { return false; }
  // A Variable named `name` is being created (a tracer forbids it on retraces).
  virtual void on_variable_create(const std::string& name) {}
};

// Installs a hook on this thread for the scope's lifetime (RAII).
class HookScope {
 public:
  explicit HookScope(DispatchHook* hook);
  ~HookScope();
  HookScope(const HookScope&) = delete;
  HookScope& operator=(const HookScope&) = delete;

 private:
  DispatchHook* hook_;
};

// Whether `hook` is installed on this thread now (not hidden by SuspendHooks).
bool hook_is_installed(const DispatchHook* hook);

// Hides every hook on this thread for the scope's lifetime (a hook that runs ops of its own
// uses this to avoid seeing them).
class SuspendHooks {
 public:
  SuspendHooks();
  ~SuspendHooks();
  SuspendHooks(const SuspendHooks&) = delete;
  SuspendHooks& operator=(const SuspendHooks&) = delete;

 private:
  std::vector<DispatchHook*> saved_;
};

// The one entry point of every primitive: shape/dtype inference, then the hooks, then the
// kernel of the inputs' device.
std::vector<Tensor> dispatch(const OpDef& op, std::span<const Tensor> inputs,
                             const Attrs& attrs = {});
// For single-output ops.
Tensor dispatch1(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs = {});
inline Tensor dispatch1(const OpDef& op, std::initializer_list<Tensor> inputs,
                        const Attrs& attrs = {}) {
  return dispatch1(op, std::span<const Tensor>(inputs.begin(), inputs.size()), attrs);
}

// Reads a Variable's current value through the hooks: `current` is its stored value.
Tensor read_variable_through_hooks(VariableImpl& var, const Tensor& current);

// Offers an assign to the hooks; true when one took it over.
bool assign_variable_through_hooks(VariableImpl& var, const Tensor& value);
// Whether any hook on this thread captures state changes (a trace is being recorded).
bool state_is_captured();
// Tells the hooks a Variable is being created.
void notify_variable_create(const std::string& name);

// Whether dispatch on this thread is plain: no hook installed and KILN_CHECK_NUMERICS off, so
// that dispatch(op, inputs, attrs) is exactly the kernel of the inputs' device called with the
// inferred types. Compiled functions call their library kernels directly when it is.
bool dispatch_is_plain();

// Runs inference only (no hooks, no kernel).
std::vector<TensorType> infer_types(const OpDef& op, std::span<const Tensor> inputs,
                                    const Attrs& attrs);

}  // namespace kiln
