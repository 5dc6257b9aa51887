#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <kiln/core/attrs.h>
#include <kiln/core/device.h>
#include <kiln/core/tensor.h>

namespace kiln {

// Category flags of a primitive. Passes and tests query these sets instead of repeating op
// lists (tinygrad's GroupOp idea).
enum OpFlags : uint32_t {
  kElementwise = 1u << 0,
  kReduction = 1u << 1,
  kMovement = 1u << 2,           // reshape/transpose/slice/broadcast/pad/concat/gather...
  kContraction = 1u << 3,        // dot_general, conv
  kStateful = 1u << 4,           // rng, variable reads and assigns: never CSE'd or reordered
  kView = 1u << 5,               // the eager kernel returns a view of its input, no copy
  kCreation = 1u << 6,           // no tensor inputs (iota, rng, constant)
  kNotDifferentiable = 1u << 7,  // a deliberate "no VJP" mark (compare, argmax, integer ops)
  kCommutative = 1u << 8,
};

class OpDef;

// What a VJP rule reads, so a tape keeps only that alive (shapes and dtypes are always kept).
enum VjpNeeds : uint32_t {
  kVjpNeedsNothing = 0,
  kVjpNeedsInputs = 1u << 0,
  kVjpNeedsOutputs = 1u << 1,
  kVjpNeedsAll = kVjpNeedsInputs | kVjpNeedsOutputs,
};

// Output types from input types and attributes. Must work for every input it accepts and
// raise kiln::Error (naming the op -- op.name() --, shapes and dtypes) for everything else.
using InferFn = std::vector<TensorType> (*)(const OpDef& op, std::span<const TensorType> inputs,
                                            const Attrs& attrs);
// Runs the op on concrete tensors of one device; `out` are the inferred output types.
using KernelFn = std::vector<Tensor> (*)(std::span<const Tensor> inputs, const Attrs& attrs,
                                         std::span<const TensorType> out);
// Vector-Jacobian product: gradients of the inputs from those of the outputs, written with
// public ops (filled by autograd/), so an outer tape records them (higher order) and a
// tracer captures them. Returns one Tensor per input; undefined for inputs that get no
// gradient (indices, conditions). Inputs or outputs the rule does not need (see VjpNeeds)
// arrive as data-less placeholders that carry only their dtype and shape.
using VjpFn = std::function<std::vector<Tensor>(std::span<const Tensor> inputs, const Attrs&,
                                                std::span<const Tensor> outputs,
                                                std::span<const Tensor> output_grads)>;

// One primitive: declared once, here, with everything every subsystem needs to know.
class OpDef {
 public:
  explicit OpDef(std::string name) : name_(std::move(name)) {}

  const std::string& name() const { return name_; }
  uint32_t flags() const { return flags_; }
  bool has(OpFlags f) const { return (flags_ & f) != 0; }
  int num_inputs() const { return num_inputs_; }  // -1: variadic
  InferFn infer() const { return infer_; }
  KernelFn kernel(DeviceType d) const { return kernels_[static_cast<int>(d)]; }
  const VjpFn& vjp() const { return vjp_; }
  uint32_t vjp_needs() const { return vjp_needs_; }
  bool differentiable() const { return !has(kNotDifferentiable); }
  const void* lowering() const { return lowering_; }
  const std::string& doc() const { return doc_; }

  // Builder-style setters used by the registration macros.
  OpDef& set_flags(uint32_t f) {
    flags_ |= f;
    return *this;
  }
  OpDef& set_num_inputs(int n) {
    num_inputs_ = n;
    return *this;
  }
  OpDef& set_infer(InferFn f) {
    infer_ = f;
    return *this;
  }
  OpDef& set_kernel(DeviceType d, KernelFn f) {
    kernels_[static_cast<int>(d)] = f;
    return *this;
  }
  OpDef& set_vjp(VjpFn f, uint32_t needs = kVjpNeedsAll) {
    vjp_ = std::move(f);
    vjp_needs_ = needs;
    return *this;
  }
  OpDef& set_lowering(const void* l) {
    lowering_ = l;
    return *this;
  }
  OpDef& set_doc(std::string d) {
    doc_ = std::move(d);
    return *this;
  }

 private:
  std::string name_;
  uint32_t flags_ = 0;
  int num_inputs_ = -1;
  InferFn infer_ = nullptr;
  KernelFn kernels_[kNumDeviceTypes] = {};
  VjpFn vjp_;
  uint32_t vjp_needs_ = kVjpNeedsAll;
  const void* lowering_ = nullptr;  // the JIT's lowering rule (jit/ fills it)
  std::string doc_;
};

// The single source of truth about primitives. Entries are created on first mention, so the
// order in which core/ declares ops and backends register kernels does not matter.
class Registry {
 public:
  static Registry& instance();
  // The op named `name`, created empty if unknown (for registration code).
  OpDef& mutable_op(const std::string& name);
  // The op named `name`; raises kiln::Error if there is none.
  const OpDef& op(const std::string& name) const;
  const OpDef* find(const std::string& name) const;
  std::vector<const OpDef*> all() const;

 private:
  std::map<std::string, std::unique_ptr<OpDef>> ops_;
};

inline Registry& registry() {
  return Registry::instance();
}

namespace detail {
struct Registrar {
  template <class Fn>
  Registrar(Fn&& fn) {  // NOLINT: built from a lambda by KILN_STATIC_INIT
    fn();
  }
};
}  // namespace detail

}  // namespace kiln

#define KILN_CONCAT_IMPL(a, b) a##b
#define KILN_CONCAT(a, b) KILN_CONCAT_IMPL(a, b)
// KILN_STATIC_INIT { ...registration code... }
#define KILN_STATIC_INIT \
  static ::kiln::detail::Registrar KILN_CONCAT(kiln_registrar_, __LINE__) = []
