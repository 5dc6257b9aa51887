#pragma once

// What the .cu files share (device code only; nvcc sees nothing of Kiln's but the launch
// headers): the launch shape of a grid-stride loop and the dispatch of a launch on a dtype.

#include <cuda_runtime.h>

#include <cstdint>

#include "launch.h"  // the dtype codes

namespace kiln::cuda::launch {

inline constexpr int kThreads = 256;               // threads per block
inline constexpr int64_t kMaxBlocks = 65535 * 32;  // the loops stride past this

// Enough blocks of kThreads for n threads, at least one, at most kMaxBlocks.
inline int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(b < kMaxBlocks ? (b > 0 ? b : 1) : kMaxBlocks);
}

// for (i = this thread's first position; i < n; i += the grid's size), over int64 positions.
#define KILN_GRID_LOOP(i, n)                                                             \
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)

// Calls f with a value of the unsigned type of `size` bytes (kernels that only move bits);
// 0, or cudaErrorInvalidValue for another size.
template <class F>
int visit_size(int size, F&& f) {
  switch (size) {
    case 1:
      f(uint8_t{});
      return 0;
    case 4:
      f(uint32_t{});
      return 0;
    case 8:
      f(uint64_t{});
      return 0;
    default:
      return static_cast<int>(cudaErrorInvalidValue);
  }
}

// The C++ type of a dtype code.
template <int code>
struct TypeOf;
template <>
struct TypeOf<kBool> {
  using type = bool;
};
template <>
struct TypeOf<kU8> {
  using type = uint8_t;
};
template <>
struct TypeOf<kI32> {
  using type = int32_t;
};
template <>
struct TypeOf<kI64> {
  using type = int64_t;
};
template <>
struct TypeOf<kF32> {
  using type = float;
};
template <>
struct TypeOf<kF64> {
  using type = double;
};

// Runs go(T{}) for the type of `dtype` when it is one of Codes (a launch): the launch's
// error, or cudaErrorInvalidValue for another dtype code.
template <int... Codes, class Go>
int visit_dtypes(int dtype, Go&& go) {
  const bool known = ((dtype == Codes ? (go(typename TypeOf<Codes>::type{}), true) : false) || ...);
  if (!known) return static_cast<int>(cudaErrorInvalidValue);
  return static_cast<int>(cudaGetLastError());
}

// f32 (float) and f64 (double) only.
template <class Go>
int floating(int dtype, Go&& go) {
  return visit_dtypes<kF32, kF64>(dtype, static_cast<Go&&>(go));
}

}  // namespace kiln::cuda::launch
