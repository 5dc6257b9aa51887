#pragma once

// autograd/: Variables (the only mutable state), GradientTape, and one VJP rule per
// differentiable primitive.

#include <memory>
#include <mutex>
#include <string>

#include <kiln/core/tensor.h>

namespace kiln {

class VariableImpl : public std::enable_shared_from_this<VariableImpl> {
 public:
  VariableImpl(Tensor value, std::string name, bool trainable);
  const std::string& name() const { return name_; }
  bool trainable() const { return trainable_; }
  uint64_t id() const { return id_; }
  // The stored value, bypassing hooks (for tapes, tracers and checkpoints).
  Tensor stored() const;
  void store(Tensor value);

 private:
  mutable std::mutex mu_;
  Tensor value_;
  std::string name_;
  bool trainable_;
  uint64_t id_;
};

// Mutable state with TF2 semantics. A Variable is a handle: copies refer to the same
// variable. It converts to a Tensor wherever one is expected, reading its current value.
// Reads return the same Tensor until the next assign, so a tape that watches a variable
// sees every read of one value as one source.
class Variable {
 public:
  Variable() = default;
  Variable(const Tensor& initial, std::string name = "Variable", bool trainable = true);

  bool defined() const { return impl_ != nullptr; }
  Tensor value() const;                        // a read: visible to tapes and tracers
  operator Tensor() const { return value(); }  // NOLINT(google-explicit-constructor)

  // Updates in place: shape and dtype must match (kiln::Error otherwise).
  void assign(const Tensor& t) const;
  void assign_add(const Tensor& t) const;
  void assign_sub(const Tensor& t) const;

  const std::string& name() const { return impl().name(); }
  bool trainable() const { return impl().trainable(); }
  Shape shape() const { return impl().stored().shape(); }
  DType dtype() const { return impl().stored().dtype(); }
  uint64_t id() const { return impl().id(); }
  VariableImpl* get() const { return impl_.get(); }
  const std::shared_ptr<VariableImpl>& impl_ptr() const { return impl_; }
  explicit Variable(std::shared_ptr<VariableImpl> impl) : impl_(std::move(impl)) {}

 private:
  VariableImpl& impl() const {
    KILN_CHECK(impl_ != nullptr, "Variable: use of an undefined Variable");
    return *impl_;
  }
  std::shared_ptr<VariableImpl> impl_;
};

}  // namespace kiln
