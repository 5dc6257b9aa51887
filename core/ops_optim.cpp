// Fused optimizer update primitives. An eager Adam written with public ops makes about a
// dozen passes over every parameter; TensorFlow's ApplyAdam kernels make one, and so does
// this. The primitive is functional (returns the new values; Variables are assigned by the
// caller), so a tracer and the JIT treat it like any other elementwise op.

#include <kiln/core/dispatch.h>
#include <kiln/core/ops.h>

namespace kiln {
namespace {

std::vector<TensorType> infer_adam(const OpDef& def, std::span<const TensorType> in, const Attrs&) {
  const TensorType& var = in[0];
  KILN_CHECK(is_floating(var.dtype), "{}: the variable must be floating point, got {}{}",
             def.name(), name(var.dtype), var.shape.str());
  const char* names[] = {"var", "m", "v", "grad"};
  for (size_t i = 1; i < in.size(); ++i) {
    // Unknown (-1) dims match anything.
    bool same = in[i].dtype == var.dtype && in[i].shape.rank() == var.shape.rank();
    for (int64_t d = 0; same && d < var.shape.rank(); ++d)
      same = in[i].shape[d] == var.shape[d] || in[i].shape[d] < 0 || var.shape[d] < 0;
    KILN_CHECK(same, "{}: {} is {}{} but var is {}{}", def.name(), names[i], name(in[i].dtype),
               in[i].shape.str(), name(var.dtype), var.shape.str());
  }
  return {var, var, var};
}

KILN_STATIC_INIT {
  registry()
      .mutable_op("adam_update")
      .set_num_inputs(4)
      .set_infer(infer_adam)
      .set_flags(kElementwise | kNotDifferentiable)
      .set_doc(
          "One Adam step: inputs (var, m, v, grad); attrs lr (bias correction folded in), "
          "beta1, beta2, eps; outputs (var', m', v').");
};

}  // namespace

AdamUpdate adam_update(const Tensor& var, const Tensor& m, const Tensor& v, const Tensor& grad,
                       double lr, double beta1, double beta2, double eps) {
  static const OpDef& op = registry().op("adam_update");
  auto out = dispatch(op, std::vector<Tensor>{var, m, v, cast(grad, var.dtype())},
                      Attrs{{"lr", lr}, {"beta1", beta1}, {"beta2", beta2}, {"eps", eps}});
  return {out[0], out[1], out[2]};
}

}  // namespace kiln
