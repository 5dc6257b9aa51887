#include <kiln/core/dispatch.h>

#include <atomic>
#include <cmath>
#include <cstdlib>

#include <kiln/core/float_mode.h>

namespace kiln {
namespace {

thread_local std::vector<DispatchHook*> t_hooks;

std::atomic<bool> g_flush_denormal{true};

bool check_numerics_enabled() {
  static const bool on = [] {
    const char* s = std::getenv("KILN_CHECK_NUMERICS");
    return s && *s && std::string(s) != "0";
  }();
  return on;
}

void check_numerics(const OpDef& op, const Tensor& t) {
  if (!is_floating(t.dtype()) || t.is_symbolic()) return;
  SuspendHooks quiet;
  Tensor c = t.to(Device::cpu()).contiguous();
  visit_dtype(t.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_floating_point_v<T>) {
      const T* p = c.data<T>();
      for (int64_t i = 0; i < c.numel(); ++i)
        KILN_CHECK(std::isfinite(p[i]),
                   "{}: produced a non-finite value ({}) in output {} "
                   "(KILN_CHECK_NUMERICS)",
                   op.name(), static_cast<double>(p[i]), t.type_str());
    }
  });
}

std::string describe(std::span<const Tensor> inputs) {
  std::string s;
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (i) s += ", ";
    s += inputs[i].defined() ? inputs[i].type_str() : "undefined";
    if (inputs[i].defined() && !inputs[i].device().is_cpu()) s += " on " + inputs[i].device().str();
  }
  return s;
}

std::vector<Tensor> run_kernel(const OpDef& op, std::span<const Tensor> inputs,
                               const Attrs& attrs) {
  std::vector<TensorType> types = infer_types(op, inputs, attrs);
  // The op runs where its inputs are. A rank-0 CPU tensor (a scalar operand, a traced
  // constant) goes along with tensors on one device, as in PyTorch; anything else must match.
  Device device = Device::cpu();
  for (const Tensor& t : inputs) {
    KILN_CHECK(!t.is_symbolic(),
               "{}: symbolic tensor {} was used outside the trace that created it", op.name(),
               t.type_str());
    if (!t.device().is_cpu()) device = t.device();
  }
  std::vector<Tensor> moved;
  for (const Tensor& t : inputs) {
    if (t.device() == device) continue;
    KILN_CHECK(t.device().is_cpu() && t.rank() == 0,
               "{}: inputs are on different devices: {} and {} ({})", op.name(), device.str(),
               t.device().str(), describe(inputs));
    if (moved.empty()) moved.assign(inputs.begin(), inputs.end());
  }
  if (!moved.empty()) {
    for (Tensor& t : moved)
      if (t.device() != device) t = t.to(device);
    inputs = moved;
  }
  KernelFn kernel = op.kernel(device.type);
  KILN_CHECK(kernel != nullptr, "{}: no kernel for device {} ({})", op.name(), device.str(),
             describe(inputs));
  std::vector<Tensor> out;
  if (device.is_cpu()) {
    FloatModeScope mode;
    out = kernel(inputs, attrs, types);
  } else {
    out = kernel(inputs, attrs, types);
  }
  KILN_ASSERT(out.size() == types.size(), "{}: kernel returned {} outputs, inference said {}",
              op.name(), out.size(), types.size());
  if (check_numerics_enabled())
    for (const Tensor& t : out)
      check_numerics(op, t);
  return out;
}

}  // namespace

void set_flush_denormal(bool on) {
  g_flush_denormal.store(on, std::memory_order_relaxed);
}

bool flush_denormal() {
  return g_flush_denormal.load(std::memory_order_relaxed);
}

HookScope::HookScope(DispatchHook* hook) : hook_(hook) {
  t_hooks.push_back(hook);
}
HookScope::~HookScope() {
  for (size_t i = t_hooks.size(); i-- > 0;)
    if (t_hooks[i] == hook_) {
      t_hooks.erase(t_hooks.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
}

bool dispatch_is_plain() {
  return t_hooks.empty() && !check_numerics_enabled();
}

bool hook_is_installed(const DispatchHook* hook) {
  for (const DispatchHook* h : t_hooks)
    if (h == hook) return true;
  return false;
}

SuspendHooks::SuspendHooks() : saved_(std::move(t_hooks)) {
  t_hooks.clear();
}
SuspendHooks::~SuspendHooks() {
  t_hooks = std::move(saved_);
}

std::vector<TensorType> infer_types(const OpDef& op, std::span<const Tensor> inputs,
                                    const Attrs& attrs) {
  KILN_CHECK(op.num_inputs() < 0 || static_cast<int>(inputs.size()) == op.num_inputs(),
             "{}: expects {} inputs, got {}", op.name(), op.num_inputs(), inputs.size());
  std::vector<TensorType> in;
  in.reserve(inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    KILN_CHECK(inputs[i].defined(), "{}: input {} is an undefined Tensor", op.name(), i);
    in.push_back(inputs[i].type());
  }
  KILN_ASSERT(op.infer() != nullptr, "op {} has no shape inference", op.name());
  return op.infer()(op, in, attrs);
}

std::vector<Tensor> dispatch(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs) {
  if (t_hooks.empty()) [[likely]]
    return run_kernel(op, inputs, attrs);
  const std::vector<DispatchHook*> hooks = t_hooks;  // hooks may push or pop hooks
  std::vector<Tensor> out;
  bool redirected = false;
  for (size_t i = hooks.size(); i-- > 0 && !redirected;)
    redirected = hooks[i]->redirect(op, inputs, attrs, out);
  if (!redirected) out = run_kernel(op, inputs, attrs);
  for (DispatchHook* h : hooks)
    h->observe(op, inputs, attrs, out);
  return out;
}

Tensor read_variable_through_hooks(VariableImpl& var, const Tensor& current) {
  if (t_hooks.empty()) [[likely]]
    return current;
  const std::vector<DispatchHook*> hooks = t_hooks;
  Tensor value = current;
  for (size_t i = hooks.size(); i-- > 0;)
    if (hooks[i]->redirect_variable_read(var, value)) break;
  for (DispatchHook* h : hooks)
    h->on_variable_read(var, value);
  return value;
}

bool assign_variable_through_hooks(VariableImpl& var, const Tensor& value) {
  if (t_hooks.empty()) [[likely]]
    return false;
  const std::vector<DispatchHook*> hooks = t_hooks;
  for (size_t i = hooks.size(); i-- > 0;)
    if (hooks[i]->redirect_variable_assign(var, value)) return true;
  return false;
}

bool state_is_captured() {
  for (DispatchHook* h : t_hooks)
    if (h->captures_state()) return true;
  return false;
}

void notify_variable_create(const std::string& name) {
  const std::vector<DispatchHook*> hooks = t_hooks;
  for (DispatchHook* h : hooks)
    h->on_variable_create(name);
}

Tensor dispatch1(const OpDef& op, std::span<const Tensor> inputs, const Attrs& attrs) {
  std::vector<Tensor> out = dispatch(op, inputs, attrs);
  KILN_ASSERT(out.size() == 1, "{}: expected one output, got {}", op.name(), out.size());
  return std::move(out[0]);
}

}  // namespace kiln
