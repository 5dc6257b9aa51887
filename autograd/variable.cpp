#include <kiln/autograd/variable.h>

#include <kiln/core/dispatch.h>
#include <kiln/core/ops.h>

namespace kiln {

VariableImpl::VariableImpl(Tensor value, std::string name, bool trainable)
    : value_(std::move(value)),
      name_(std::move(name)),
      trainable_(trainable),
      id_(TensorImpl::next_id()) {}

Tensor VariableImpl::stored() const {
  std::lock_guard<std::mutex> lock(mu_);
  return value_;
}

void VariableImpl::store(Tensor value) {
  std::lock_guard<std::mutex> lock(mu_);
  value_ = std::move(value);
}

Variable::Variable(const Tensor& initial, std::string name, bool trainable) {
  KILN_CHECK(initial.defined(), "Variable: '{}' needs a defined initial value", name);
  notify_variable_create(name);
  KILN_CHECK(!initial.is_symbolic(),
             "Variable: '{}' cannot be created from a symbolic tensor ({}); create variables "
             "outside the traced function or on its first trace from concrete values",
             name, initial.type_str());
  // Own a dense copy: a view of someone else's buffer would pin it.
  SuspendHooks quiet;
  impl_ = std::make_shared<VariableImpl>(initial.clone(), std::move(name), trainable);
}

Tensor Variable::value() const {
  VariableImpl& v = impl();
  return read_variable_through_hooks(v, v.stored());
}

namespace {
void check_update(const VariableImpl& v, const Tensor& t, const char* op) {
  KILN_CHECK(t.defined(), "{}: variable '{}' got an undefined Tensor", op, v.name());
  const Tensor cur = v.stored();
  KILN_CHECK(t.shape() == cur.shape() && t.dtype() == cur.dtype(),
             "{}: variable '{}' is {} but the new value is {}", op, v.name(), cur.type_str(),
             t.type_str());
}
}  // namespace

// Updates are state changes, not differentiable ops: tapes do not record them. While a
// trace captures state, they go through the hooks instead and become ordered assign nodes.
void Variable::assign(const Tensor& t) const {
  check_update(impl(), t, "assign");
  if (assign_variable_through_hooks(impl(), t)) return;
  KILN_CHECK(!t.is_symbolic(), "assign: variable '{}' got symbolic tensor {} outside its trace",
             name(), t.type_str());
  SuspendHooks quiet;
  impl().store(t.contiguous());
}

void Variable::assign_add(const Tensor& t) const {
  check_update(impl(), t, "assign_add");
  if (state_is_captured()) return assign(add(value(), t));
  SuspendHooks quiet;
  impl().store(add(impl().stored(), t));
}

void Variable::assign_sub(const Tensor& t) const {
  check_update(impl(), t, "assign_sub");
  if (state_is_captured()) return assign(sub(value(), t));
  SuspendHooks quiet;
  impl().store(sub(impl().stored(), t));
}

}  // namespace kiln
