#pragma once

// Shared by the contraction-epilogue passes (matmul_epilogue.cpp, conv_epilogue.cpp): the
// match of act(contraction(...) + bias) and its rewrite into one fused library call.
//
//   %p = <contraction>(%a, %b) {attrs}
//   %s = add(%p, %bias)        (or add(%bias, %p))   ->   %r = <fused>(%a, %b, %bias) {attrs,
//   %r = relu(%s)              (optional)                                          act = relu}
//
// Only where %p feeds nothing but the add, and the add does not broadcast %p to a bigger
// shape; the relu joins when it is the add's only user (else act = none and the relu stays).
// The fused node takes the place of the last node it replaces, where every operand is
// defined; values are compacted afterwards, as every pass leaves them.

#include <functional>

#include <kiln/tracer/graph.h>

namespace kiln::jit {

struct Epilogue {
  const char* contraction;  // e.g. "conv2d"
  const char* fused;        // e.g. "conv2d_bias_act"
  // Whether this contraction node and this bias value can become the fused op (dtypes,
  // ranks, the bias's shape against the product's).
  std::function<bool(const ir::Graph& g, const ir::Node& contraction, int bias)> fits;
};

// Rewrites every match in g (one graph level; Pass::run visits the regions). Returns
// whether it changed g.
bool fuse_epilogues(ir::Graph& g, const Epilogue& e);

}  // namespace kiln::jit
