// Convolution epilogues: act(conv2d(x, w) + bias) -> conv2d_bias_act(x, w, bias) {strides,
// dilations, padding, act}, one oneDNN convolution with a bias and a post-op instead of a
// convolution and an elementwise kernel over its whole output.
//
//   %y = conv2d(%x, %w) {...}                      %r = conv2d_bias_act(%x, %w, %bias)
//   %s = add(%y, %bias)               ->                  {..., act = relu}
//   %r = relu(%s)
//
// Assumes: a verified, simplified graph (it runs once, after the simplification passes, on
// what the JIT compiles; such graphs are not differentiated any more, and the fused op has no
// VJP). Rewrites only where the convolution's result feeds nothing but the add (and the add's
// only the relu, for act = relu): a value used elsewhere is still needed on its own
// (epilogue.h). x and w are f32; the bias is f32 and one value per output channel: [C], or
// [1, ..., 1, C] of rank <= 4, which broadcasts the same way over [N, OH, OW, C]. Other
// biases (a scalar, one per row or pixel) and other dtypes are left alone.

#include <kiln/jit/pass.h>

#include "epilogue.h"

namespace kiln::jit {
namespace {

bool fits(const ir::Graph& g, const ir::Node& conv, int bias) {
  auto type = [&](int v) -> const TensorType& { return g.types[static_cast<size_t>(v)]; };
  const TensorType& out = type(conv.outputs[0]);
  const TensorType& c = type(bias);
  if (out.dtype != DType::f32 || c.dtype != DType::f32 || c.shape.rank() < 1 ||
      c.shape.rank() > 4 || c.shape[static_cast<size_t>(c.shape.rank() - 1)] != out.shape[3])
    return false;
  for (int64_t i = 0; i + 1 < c.shape.rank(); ++i)
    if (c.shape[static_cast<size_t>(i)] != 1) return false;
  return true;
}

}  // namespace

Pass conv_epilogue() {
  return Pass("conv_epilogue", [](ir::Graph& g) {
    return fuse_epilogues(g, {"conv2d", "conv2d_bias_act", fits});
  });
}

}  // namespace kiln::jit
