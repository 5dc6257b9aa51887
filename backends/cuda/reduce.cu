// Reductions on CUDA over a dense input seen as [outer, reduced, inner]. Rows (inner == 1):
// a block per output, reducing in shared memory. Otherwise one thread per output element
// (o, i), looping over the reduced dim; adjacent threads read adjacent inner elements, so the
// loads coalesce. Sums accumulate in the input's dtype, as
// the CPU kernels do; max and min propagate NaN.

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "grid.cuh"
#include "launch.h"

namespace kiln::cuda::launch {
namespace {

template <class T>
__device__ T combine(Reduce op, T acc, T x) {
  if constexpr (std::is_floating_point_v<T>) {
    if (op == Reduce::max || op == Reduce::min)
      if (isnan(acc) || isnan(x)) return acc + x;
  }
  switch (op) {
    case Reduce::sum:
      return static_cast<T>(acc + x);
    case Reduce::prod:
      return static_cast<T>(acc * x);
    case Reduce::max:
      return x > acc ? x : acc;
    default:
      return x < acc ? x : acc;
  }
}

template <class T>
__global__ void reduce_k(Reduce op, T init, T* out, const T* x, int64_t outer, int64_t reduced,
                         int64_t inner) {
  const int64_t n = outer * inner;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = t / inner, i = t % inner;
    const T* p = x + o * reduced * inner + i;
    T acc = init;
    for (int64_t r = 0; r < reduced; ++r)
      acc = combine(op, acc, p[r * inner]);
    out[t] = acc;
  }
}

// Rows (inner == 1): one block per output, its threads striding along the row (coalesced),
// then a tree in shared memory.
template <class T>
__global__ void reduce_rows_k(Reduce op, T init, T* out, const T* x, int64_t reduced) {
  __shared__ T part[256];
  const T* row = x + static_cast<int64_t>(blockIdx.x) * reduced;
  T acc = init;
  for (int64_t r = threadIdx.x; r < reduced; r += blockDim.x)
    acc = combine(op, acc, row[r]);
  part[threadIdx.x] = acc;
  __syncthreads();
  for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) part[threadIdx.x] = combine(op, part[threadIdx.x], part[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = part[0];
}

template <class T>
T init_of(Reduce op) {
  if (op == Reduce::sum) return T(0);
  if (op == Reduce::prod) return T(1);
  if constexpr (std::is_floating_point_v<T>)
    return op == Reduce::max ? -std::numeric_limits<T>::infinity()
                             : std::numeric_limits<T>::infinity();
  return op == Reduce::max ? std::numeric_limits<T>::lowest() : std::numeric_limits<T>::max();
}

}  // namespace

int reduce(Reduce op, int dtype, void* out, const void* x, int64_t outer, int64_t reduced,
           int64_t inner, void* stream) {
  const int64_t n = outer * inner;
  if (n == 0) return 0;
  const int64_t b = (n + 255) / 256;
  const int blocks = static_cast<int>(b < 65535 * 32 ? b : 65535 * 32);
  auto st = static_cast<cudaStream_t>(stream);
  auto go = [&](auto tag) {
    using T = decltype(tag);
    if (inner == 1 && outer <= 0x7fffffff)
      reduce_rows_k<<<static_cast<unsigned>(outer), 256, 0, st>>>(
          op, init_of<T>(op), static_cast<T*>(out), static_cast<const T*>(x), reduced);
    else
      reduce_k<<<blocks, 256, 0, st>>>(op, init_of<T>(op), static_cast<T*>(out),
                                       static_cast<const T*>(x), outer, reduced, inner);
  };
  return visit_dtypes<kI32, kI64, kF32, kF64>(dtype, go);
}

}  // namespace kiln::cuda::launch
