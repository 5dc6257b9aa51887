// CUDA kernels of the copying movement primitives: concatenate and (constant) pad, with the
// CPU's semantics (backends/cpu/movement.cpp), and the batched copy of a CUDA Graph's inputs
// and outputs. Both only move elements, so they are launched
// per element size (1, 4 or 8 bytes) and copy bits exactly: NaN payloads and -0 survive.
// One thread per output element, grid-stride over int64 positions.

#include <cuda_runtime.h>

#include <cstdint>

#include "grid.cuh"
#include "launch_index.h"

namespace kiln::cuda::launch {
namespace {

// out[o, at + c] = x[o, c] for the dense [outer, width] input and [outer, out_width] output.
template <class U>
__global__ void concat_k(U* out, const U* x, int64_t outer, int64_t width, int64_t out_width,
                         int64_t at) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < outer * width;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = t / width, c = t % width;
    out[o * out_width + at + c] = x[t];
  }
}

// Each output element's coordinates, less `before`, are the input's when they fall inside its
// shape (read through its strides); otherwise the element is padding.
template <class U>
__global__ void pad_k(U* out, const U* x, PadPlan p, U value, int64_t n) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t rem = t, src = 0;
    bool inside = true;
    for (int d = p.rank - 1; d >= 0; --d) {
      const int64_t j = rem % p.out_shape[d] - p.before[d];
      rem /= p.out_shape[d];
      if (j < 0 || j >= p.in_shape[d])
        inside = false;
      else
        src += j * p.in_strides[d];
    }
    out[t] = inside ? x[src] : value;
  }
}

// Range blockIdx.y of the batch, grid-stride over its bytes: 16 at a time where both ends and
// the length allow it, else one at a time.
__global__ void copy_batch_k(CopyBatch b) {
  const int j = blockIdx.y;
  const auto* src = static_cast<const unsigned char*>(b.src[j]);
  auto* dst = static_cast<unsigned char*>(b.dst[j]);
  const int64_t n = b.bytes[j];
  const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t step = static_cast<int64_t>(gridDim.x) * blockDim.x;
  if (((reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst) | n) & 15) == 0) {
    const auto* s4 = reinterpret_cast<const uint4*>(src);
    auto* d4 = reinterpret_cast<uint4*>(dst);
    for (int64_t i = first; i < n / 16; i += step)
      d4[i] = s4[i];
  } else {
    for (int64_t i = first; i < n; i += step)
      dst[i] = src[i];
  }
}

}  // namespace

int copy_batch(const CopyBatch& b, void* stream) {
  if (b.n <= 0) return 0;
  int64_t most = 0;
  for (int j = 0; j < b.n; ++j)
    most = most > b.bytes[j] ? most : b.bytes[j];
  if (most == 0) return 0;
  // Enough blocks for the longest range in 16-byte units, at most 1024 per range.
  const int64_t units = (most + 15) / 16;
  const int64_t wanted = (units + kThreads - 1) / kThreads;
  const dim3 grid(static_cast<unsigned>(wanted < 1024 ? wanted : 1024), static_cast<unsigned>(b.n));
  copy_batch_k<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(b);
  return static_cast<int>(cudaGetLastError());
}

int concat_block(int elem_size, void* out, const void* x, int64_t outer, int64_t width,
                 int64_t out_width, int64_t at, void* stream) {
  if (outer * width == 0) return 0;
  auto st = static_cast<cudaStream_t>(stream);
  const int bad_size = visit_size(elem_size, [&](auto tag) {
    using U = decltype(tag);
    concat_k<<<blocks_for(outer * width), kThreads, 0, st>>>(
        static_cast<U*>(out), static_cast<const U*>(x), outer, width, out_width, at);
  });
  if (bad_size != 0) return bad_size;
  return static_cast<int>(cudaGetLastError());
}

int pad(int elem_size, void* out, const void* x, const PadPlan& p, uint64_t value_bits, int64_t n,
        void* stream) {
  if (n == 0) return 0;
  auto st = static_cast<cudaStream_t>(stream);
  const int bad_size = visit_size(elem_size, [&](auto tag) {
    using U = decltype(tag);
    // The low elem_size bytes of value_bits are the value's bytes (little-endian host and GPU).
    pad_k<<<blocks_for(n), kThreads, 0, st>>>(static_cast<U*>(out), static_cast<const U*>(x), p,
                                              static_cast<U>(value_bits), n);
  });
  if (bad_size != 0) return bad_size;
  return static_cast<int>(cudaGetLastError());
}

}  // namespace kiln::cuda::launch
