#pragma once

// backends/cuda/ internals shared by its .cpp files (compiled by the host compiler, with the
// CUDA runtime's headers): error checks, the current device, each device's stream.

#include <cuda_runtime.h>

#include <kiln/core/device.h>
#include <kiln/core/error.h>

namespace kiln {
struct DeviceBackend;
}

namespace kiln::cuda {

// Raises kiln::Error naming `what` and the CUDA error unless `e` is cudaSuccess.
void check(cudaError_t e, const char* what);
inline void check(int e, const char* what) {
  check(static_cast<cudaError_t>(e), what);
}

int device_count();

// Makes `index` the calling thread's current device for its lifetime, then restores the old.
class DeviceGuard {
 public:
  explicit DeviceGuard(int index);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int old_ = -1;
};

// The stream every kernel and copy on device `index` is ordered on (non-blocking, created on
// first use). One stream per device makes reuse of freed blocks stream-ordered by construction.
// On a thread that is capturing a CUDA Graph on that device: the capture's own stream, whose
// work is recorded, not run (runtime.cpp).
cudaStream_t stream(int index);

// Fills in the JIT's entries (module.cpp) of the backend that runtime.cpp registers.
void add_module_functions(DeviceBackend& b);

}  // namespace kiln::cuda
