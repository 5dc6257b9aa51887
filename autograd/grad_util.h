#pragma once

// Helpers for VJP rules.

#include <kiln/core/ops.h>
#include <kiln/core/registry.h>

namespace kiln::autograd {

// Sums a gradient of a broadcast result back to `shape` (the operand's shape).
Tensor unbroadcast(const Tensor& grad, const Shape& shape);

// Registers `vjp` as the VJP rule of the op named `name`.
void register_vjp(const char* name, VjpFn vjp, uint32_t needs = kVjpNeedsAll);

}  // namespace kiln::autograd

namespace kiln::autograd {
// Inside a VJP rule: whether the tape needs the gradient of input `i` (a rule may skip
// computing the others, e.g. matmul's gradient of its data input).
bool needs_grad(size_t i);
}  // namespace kiln::autograd
