// How compiled code runs each registry primitive (the registry's lowering slot): emitted into
// generated kernels, or a documented library call, which the Executable makes through the
// op's CPU kernel. test_jit walks the registry and fails on a primitive with neither.

#include <kiln/jit/lowering.h>

#include <kiln/core/registry.h>
#include <kiln/jit/cpu/codegen.h>

namespace kiln::jit {
namespace {

const Lowering kEmitted{"generated kernel (elementwise fusion)"};
const Lowering kReduction{
    "generated kernel for last-axis reductions of f32/f64 (row programs); other axes and "
    "dtypes: the eager reduction kernel (lane-vectorized, parallel)"};

struct Call {
  const char* op;
  Lowering how;
};

// Primitives run as library calls: what they call and why they are not generated.
const Call kCalls[] = {
    {"matmul", {"oneDNN matmul (f32), own loops for other dtypes"}},
    {"matmul_bias_act", {"oneDNN matmul with a bias and a relu post-op"}},
    {"conv2d", {"oneDNN convolution (f32)"}},
    {"conv2d_bias_act", {"oneDNN convolution with a bias and a relu post-op (f32)"}},
    {"conv2d_backprop_input", {"oneDNN convolution backward data (f32)"}},
    {"conv2d_backprop_filter", {"oneDNN convolution backward weights (f32)"}},
    {"max_pool2d", {"oneDNN pooling (f32)"}},
    {"avg_pool2d", {"oneDNN pooling (f32)"}},
    {"max_pool2d_grad", {"eager pooling-gradient kernel"}},
    {"max_pool2d_select", {"eager pooling-gradient kernel"}},
    {"avg_pool2d_grad", {"eager pooling-gradient kernel"}},
    {"adam_update",
     {"f32/f64: expanded into elementwise ops (jit/passes/expand_adam.cpp), one generated "
      "kernel that updates the variables in place; other dtypes: the eager fused Adam kernel"}},
    {"reduce_prod", {"eager reduction kernel"}},
    {"argmax", {"eager arg-reduction kernel"}},
    {"argmin", {"eager arg-reduction kernel"}},
    {"floor_div", {"eager kernel (integer division by zero is checked before the loop)"}},
    {"broadcast_to", {"a view (no copy); fused kernels read broadcasts through strides"}},
    {"reshape", {"a view where the strides allow it, else a copy"}},
    {"reshape_like", {"a view where the strides allow it, else a copy"}},
    {"transpose", {"a view (no copy)"}},
    {"slice", {"a view (no copy)"}},
    {"concatenate", {"eager copy kernel"}},
    {"pad", {"eager copy kernel"}},
    {"gather", {"eager gather kernel"}},
    {"scatter_add", {"eager scatter kernel"}},
    {"full", {"eager fill kernel"}},
    {"fill_like", {"eager fill kernel"}},
    {"iota", {"eager fill kernel"}},
    {"rng_uniform", {"eager Philox kernel with counters reserved per call"}},
    {"rng_normal", {"eager Philox kernel with counters reserved per call"}},
    {"rng_randint", {"eager Philox kernel with counters reserved per call"}},
    {"rng_bernoulli", {"eager Philox kernel with counters reserved per call"}},
    {"rng_uniform_like", {"eager Philox kernel with counters reserved per call"}},
    {"rng_normal_like", {"eager Philox kernel with counters reserved per call"}},
    {"rng_randint_like", {"eager Philox kernel with counters reserved per call"}},
    {"rng_bernoulli_like", {"eager Philox kernel with counters reserved per call"}},
};

}  // namespace

const Lowering* lowering_of(const OpDef& op) {
  return static_cast<const Lowering*>(op.lowering());
}

KILN_STATIC_INIT {
  for (const std::string& name : cpu::emitted_ops())
    registry().mutable_op(name).set_lowering(&kEmitted);
  for (const char* name : {"reduce_sum", "reduce_max", "reduce_min"})
    registry().mutable_op(name).set_lowering(&kReduction);
  for (const Call& c : kCalls)
    registry().mutable_op(c.op).set_lowering(&c.how);
};

}  // namespace kiln::jit
