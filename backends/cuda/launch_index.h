#pragma once

// The plain-types interface of the CUDA index and movement kernels (index.cu: data checks,
// argmax/argmin, gather, scatter_add; movement.cu: concatenate, pad) for the .cpp files that
// register them (index_kernels.cpp, and kernels.cpp for integer division). As in launch.h,
// every call is asynchronous on `stream` and returns the first CUDA error code (0 for
// success), except the data checks, which wait for their answer.

#include <cstdint>

#include "launch.h"

namespace kiln::cuda::launch {

// ---- data checks (index.cu) ----------------------------------------------------------------
// Errors the CPU raises from a tensor's values (an index out of range, an integer division by
// zero) are found on the device by a check kernel before the op's own kernel runs. The check
// records, in one 64-bit word of device memory that the caller provides (`word`, from the
// caching allocator, so concurrent calls never share one), the smallest flat position of an
// offending element (atomicMin), or kNoError. The call sets the word to kNoError, launches
// the check, copies the word to *first with cudaMemcpyAsync and waits with
// cudaStreamSynchronize: one host synchronization per call, the price of raising the CPU's
// error instead of returning a wrong answer. The position is the one the CPU reports (its
// loop stops at the first offending element in row-major order).
inline constexpr unsigned long long kNoError = ~0ull;

// The first j in [0, k) with indices[j] < 0 or indices[j] >= n (indices dense, i32 or i64).
int first_bad_index(int index_dtype, const void* indices, int64_t k, int64_t n,
                    unsigned long long* word, unsigned long long* first, void* stream);
// The first of n dense elements of `elem_size` bytes (1, 4 or 8) whose bits are all zero: an
// integer or bool zero.
int first_zero(int elem_size, const void* x, int64_t n, unsigned long long* word,
               unsigned long long* first, void* stream);

// ---- argmax / argmin (index.cu) ------------------------------------------------------------
// Over a dense input seen as [outer, r, inner] (r >= 1): out[o, i] is the first k with the
// largest (smallest) x[o, k, i], or the first NaN if there is one, as backends/cpu/reduce.cpp.
int arg_reduce(bool is_max, int dtype, int64_t* out, const void* x, int64_t outer, int64_t r,
               int64_t inner, void* stream);

// ---- gather / scatter_add (index.cu) -------------------------------------------------------
// x dense as [outer, n, inner], indices dense with k elements (i32 or i64), the updates and
// the gathered output dense as [outer, k, inner]. Elements whose index is out of range are
// skipped (never read or written): the caller has already raised the error for them.
// gather: out[o, j, i] = x[o, indices[j], i]; moves bits, so it takes the element size.
int gather(int elem_size, int index_dtype, void* out, const void* x, const void* indices,
           int64_t outer, int64_t n, int64_t k, int64_t inner, void* stream);
// scatter_add: out[o, indices[j], i] += updates[o, j, i], with `out` already holding x.
// Atomic adds: integers wrap (two's complement) and bool ORs, exactly as on the CPU in any
// order; f32 and f64 sums of duplicate indices land in an unspecified order, so they are not
// bitwise reproducible (each sum is still correctly rounded step by step).
int scatter_add(int dtype, int index_dtype, void* out, const void* updates, const void* indices,
                int64_t outer, int64_t n, int64_t k, int64_t inner, void* stream);

// ---- concatenate / pad (movement.cu) -------------------------------------------------------
// One input of a concatenation: dense x as [outer, width] goes to columns [at, at + width) of
// the dense output seen as [outer, out_width] (widths and `at` in elements, the axis length
// times the inner size).
int concat_block(int elem_size, void* out, const void* x, int64_t outer, int64_t width,
                 int64_t out_width, int64_t at, void* stream);

// A constant pad: out (dense, `rank` dims of out_shape) holds x, read through its element
// strides, at offset `before` in every dim, and `value_bits` elsewhere.
struct PadPlan {
  int rank = 0;
  int64_t out_shape[kMaxRank] = {};
  int64_t before[kMaxRank] = {};
  int64_t in_shape[kMaxRank] = {};
  int64_t in_strides[kMaxRank] = {};
};
// `value_bits` holds the padding value already converted to the dtype (on the host, as the
// CPU converts it), in its low elem_size bytes.
int pad(int elem_size, void* out, const void* x, const PadPlan& p, uint64_t value_bits, int64_t n,
        void* stream);

// Up to kCopyBatch dense byte ranges copied in one launch (the copies in and out of a
// replayed CUDA Graph): range j copies bytes[j] bytes from src[j] to dst[j]; the ranges must
// not overlap.
inline constexpr int kCopyBatch = 32;
struct CopyBatch {
  int n = 0;
  const void* src[kCopyBatch] = {};
  void* dst[kCopyBatch] = {};
  int64_t bytes[kCopyBatch] = {};
};
int copy_batch(const CopyBatch& b, void* stream);

}  // namespace kiln::cuda::launch
