// The JIT's side of the CUDA backend: PTX modules loaded through the runtime's library API
// (cudaLibraryLoadData, so no link against the driver library is needed: the runtime finds
// the driver at run time), and kernel launches with one thread per unit in blocks of 256.
// Loaded libraries stay for the process: a compiled function's kernels may run until exit.

#include <climits>

#include <kiln/core/device_backend.h>
#include <kiln/core/registry.h>

#include "runtime.h"

namespace kiln::cuda {
namespace {

int arch(int index) {
  cudaDeviceProp p{};
  check(cudaGetDeviceProperties(&p, index), "cudaGetDeviceProperties");
  return p.major * 10 + p.minor;
}

std::vector<void*> load_kernels(int index, const std::string& image,
                                const std::vector<std::string>& names) {
  DeviceGuard g(index);
  cudaLibrary_t lib = nullptr;
  check(cudaLibraryLoadData(&lib, image.c_str(), nullptr, nullptr, 0, nullptr, nullptr, 0),
        "cudaLibraryLoadData (loading the JIT's PTX)");
  std::vector<void*> out;
  for (const std::string& name : names) {
    cudaKernel_t k = nullptr;
    check(cudaLibraryGetKernel(&k, lib, name.c_str()), "cudaLibraryGetKernel");
    out.push_back(reinterpret_cast<void*>(k));
  }
  return out;
}

void launch(int index, void* kernel, void** args, int64_t units) {
  if (units <= 0) return;
  constexpr int64_t kBlock = 256;
  const int64_t grid = (units + kBlock - 1) / kBlock;
  KILN_CHECK(grid <= INT_MAX, "cuda: a kernel over {} units needs more than 2^31 blocks", units);
  DeviceGuard g(index);
  check(cudaLaunchKernel(static_cast<const void*>(kernel), dim3(static_cast<unsigned>(grid)),
                         dim3(static_cast<unsigned>(kBlock)), args, 0, stream(index)),
        "cudaLaunchKernel (a JIT kernel)");
}

}  // namespace

// Called by runtime.cpp's registration (one DeviceBackend for the whole backend).
void add_module_functions(DeviceBackend& b) {
  b.arch = &arch;
  b.load_kernels = &load_kernels;
  b.launch = &launch;
}

}  // namespace kiln::cuda
