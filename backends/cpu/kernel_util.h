#pragma once

// Small helpers shared by the CPU kernels.

#include <span>
#include <vector>

#include <kiln/core/attrs.h>
#include <kiln/core/dispatch.h>
#include <kiln/core/registry.h>
#include <kiln/core/tensor.h>

namespace kiln::cpu {

// A fresh contiguous CPU tensor of the given type.
inline Tensor alloc(const TensorType& t) {
  return Tensor::empty(t.shape, t.dtype);
}

// `t` made dense and row-major, without going through dispatch (kernels never record).
inline Tensor dense(const Tensor& t) {
  if (t.is_contiguous()) return t;
  SuspendHooks quiet;
  return t.contiguous();
}

// Registers `fn` as the CPU kernel of the op named `name`.
inline void register_cpu_kernel(const char* name, KernelFn fn) {
  registry().mutable_op(name).set_kernel(DeviceType::cpu, fn);
}

}  // namespace kiln::cpu
