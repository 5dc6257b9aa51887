#pragma once

// The NVPTX code generator: the fused kernels the CPU path plans (jit/cpu/codegen.h), emitted
// through the same elemental emitter and lowered by LLVM's NVPTX backend to PTX for one GPU
// architecture. It needs no GPU and no CUDA toolkit, except libdevice (the CUDA toolkit's
// bitcode math library) for the few ops the emitter leaves to the C math library (f64 exp,
// log and tanh; pow, log1p, expm1, sin, cos; f64 erf). LLVM's headers stay in the .cpp.
//
// Each plan becomes one .entry whose parameters are the x86 ABI's two arrays passed by
// value, then the number of work units:
//
//   .entry kiln_<key>_k0(.param .u64 buffer_0, ..., .param .u64 dim_0, ...,
//                        .param .u64 units)
//
// A thread runs one unit, the range [i, i + 1) of the x86 kernel's loop: an element, a row
// (elementwise kernels with broadcast inputs, and row programs) or a column (column programs).
// The grid covers the units with blocks of any size; extra threads return at once.

#include <cstdint>
#include <string>
#include <vector>

#include <kiln/jit/cpu/codegen.h>

namespace kiln::jit::cuda {

struct PtxKernel {
  std::string name;     // the .entry symbol
  int64_t buffers = 0;  // data pointers (cpu::buffers_size)
  int64_t dims = 0;     // int64 dims after them (cpu::dims_size)
};

struct PtxModule {
  std::string ptx;
  std::vector<PtxKernel> kernels;  // one per plan, in order
  std::string llvm_ir;             // the optimized NVPTX module, when asked for
  bool uses_libdevice = false;
};

// PTX for `plans` (kernels of g) on sm_<sm> (80, 90, ...). Raises kiln::Error naming the
// kernel and the path when it needs libdevice and libdevice_path() has none.
PtxModule emit_ptx(const ir::Graph& g, const std::vector<cpu::KernelPlan>& plans, int sm,
                   bool want_ir = false);

// Where libdevice is read from: $KILN_LIBDEVICE, else the file the build found in the CUDA
// toolkit; empty when neither names a file.
std::string libdevice_path();

}  // namespace kiln::jit::cuda
