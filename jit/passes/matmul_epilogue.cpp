// Matmul epilogues: act(matmul(a, b) + bias) -> matmul_bias_act(a, b, bias) {act}, one oneDNN
// call with a bias and a post-op instead of a matmul and an elementwise kernel.
//
//   %p = matmul(%a, %b)                             %r = matmul_bias_act(%a, %b, %bias)
//   %s = add(%p, %bias)               ->                   {act = relu}
//   %r = relu(%s)
//
// Assumes: a verified, simplified graph (it runs once, after the simplification passes, on
// what the JIT compiles; such graphs are not differentiated any more, and the fused op has no
// VJP). Rewrites only where the matmul's result feeds nothing but the add (and the add's only
// the relu, for act = relu): a value used elsewhere is still needed on its own (epilogue.h).
// a and b are f32 matrices and the bias an f32 vector of the product's column count.

#include <kiln/jit/pass.h>

#include "epilogue.h"

namespace kiln::jit {
namespace {

bool fits(const ir::Graph& g, const ir::Node& mm, int bias) {
  auto type = [&](int v) -> const TensorType& { return g.types[static_cast<size_t>(v)]; };
  const TensorType& a = type(mm.inputs[0]);
  const TensorType& b = type(mm.inputs[1]);
  const TensorType& out = type(mm.outputs[0]);
  const TensorType& c = type(bias);
  return a.dtype == DType::f32 && b.dtype == DType::f32 && a.shape.rank() == 2 &&
         b.shape.rank() == 2 && c.dtype == DType::f32 && c.shape.rank() == 1 &&
         c.shape[0] == out.shape[1];
}

}  // namespace

Pass matmul_epilogue() {
  return Pass("matmul_epilogue", [](ir::Graph& g) {
    return fuse_epilogues(g, {"matmul", "matmul_bias_act", fits});
  });
}

}  // namespace kiln::jit
