#pragma once

// What a device backend (backends/cuda/) registers with core, so that core can allocate on
// the device and move bytes to and from it without depending on the backend. A build without
// the backend has no entry: allocating on, or copying to, such a device raises kiln::Error.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <kiln/core/allocator.h>
#include <kiln/core/device.h>

namespace kiln {

struct DeviceBackend {
  // Devices of this type present at run time (0 without a driver or a device).
  int (*device_count)() = nullptr;
  // The caching allocator of device `index`.
  Allocator& (*allocator)(int index) = nullptr;
  // Copies `nbytes` of dense data; one side may be the host. A copy into host memory has
  // finished when this returns (the host synchronizes only when it reads values); others are
  // ordered on the device's stream.
  void (*copy)(void* dst, Device dst_device, const void* src, Device src_device,
               size_t nbytes) = nullptr;
  // Waits for the device's queued work.
  void (*synchronize)(int index) = nullptr;
  // Generated code (the JIT): the device's architecture as 10 * major + minor (90 for
  // sm_90); loading a module image (PTX for CUDA) and returning its named kernels' handles,
  // in order; running one kernel with one thread per unit, `args` pointing at each
  // parameter's value, ordered on the device's stream.
  int (*arch)(int index) = nullptr;
  std::vector<void*> (*load_kernels)(int index, const std::string& image,
                                     const std::vector<std::string>& names) = nullptr;
  void (*launch)(int index, void* kernel, void** args, int64_t units) = nullptr;
  // CUDA Graphs (jit/device_graph.cpp); null where the backend has none. Between
  // capture_begin and capture_end the calling thread's work on the device's stream is
  // recorded, not run, and its allocations there come from a pool the graph will own (a
  // copy to or from the host raises kiln::Error: it cannot be recorded). capture_end returns
  // the replayable graph, or null with the reason in `why`; either way the thread is back to
  // normal and a failed capture's blocks return to the cache.
  void (*capture_begin)(int index) = nullptr;
  void* (*capture_end)(int index, std::string& why) = nullptr;
  void (*graph_launch)(int index, void* graph) = nullptr;
  // Waits for the graph's replays, frees it and returns its pool to the cache. Never throws.
  void (*graph_destroy)(int index, void* graph) = nullptr;
  // Copies n dense byte ranges within the device, ordered on its stream, in few launches.
  void (*copy_batch)(int index, const void* const* src, void* const* dst, const int64_t* bytes,
                     size_t n) = nullptr;
};

void register_device_backend(DeviceType type, const DeviceBackend& backend);
// The registered backend, or null.
const DeviceBackend* device_backend(DeviceType type);
// Devices of `type` present at run time: 1 for the CPU; 0 for a type without a backend in
// this build, or without a driver or device.
int device_count(DeviceType type);
// Waits until the work queued on `device` has finished (nothing to wait for on the CPU).
void synchronize(Device device);
// Whether matmuls on CUDA may round their f32 inputs to TF32 (tensor cores, 10-bit mantissa).
// Off by default, as in PyTorch: results then match the CPU to f32 accuracy.
void set_allow_tf32(bool allow);
bool allow_tf32();

namespace memory {
// The caching allocator's counters for `device` (the CPU's for Device::cpu()).
MemoryStats device_stats(Device device);
// Returns `device`'s cached free blocks to the system (cudaFree on CUDA).
void empty_cache(Device device);
}  // namespace memory

// The backend for `device`, checked: registered, and the index in range. `what` names the
// operation in the error.
const DeviceBackend& checked_backend(Device device, const char* what);

}  // namespace kiln
