// CUDA kernels that read or write through data: the data checks (an index out of range, an
// integer zero divisor), argmax/argmin, gather and scatter_add. Semantics are the CPU's
// (backends/cpu/reduce.cpp, backends/cpu/movement.cpp); launch_index.h says what each takes.
// Every kernel is a grid-stride loop over int64 positions, launched on the passed stream.

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "grid.cuh"
#include "launch_index.h"

namespace kiln::cuda::launch {
namespace {

template <class F>
int visit_index(int index_dtype, F&& f) {
  if (index_dtype == kI32) {
    f(int32_t{});
    return 0;
  }
  if (index_dtype == kI64) {
    f(int64_t{});
    return 0;
  }
  return static_cast<int>(cudaErrorInvalidValue);
}

template <class F>
int visit_dtype(int dtype, F&& f) {
  switch (dtype) {
    case kBool:
      f(bool{});
      return 0;
    case kU8:
      f(uint8_t{});
      return 0;
    case kI32:
      f(int32_t{});
      return 0;
    case kI64:
      f(int64_t{});
      return 0;
    case kF32:
      f(float{});
      return 0;
    case kF64:
      f(double{});
      return 0;
    default:
      return static_cast<int>(cudaErrorInvalidValue);
  }
}

// ---- data checks ---------------------------------------------------------------------------

template <class I>
__global__ void bad_index_k(const I* idx, int64_t k, int64_t n, unsigned long long* word) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < k;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t v = idx[j];
    if (v < 0 || v >= n) atomicMin(word, static_cast<unsigned long long>(j));
  }
}

template <class U>
__global__ void zero_k(const U* x, int64_t n, unsigned long long* word) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < n;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (x[j] == U(0)) atomicMin(word, static_cast<unsigned long long>(j));
  }
}

// Arms the word, runs `launch` (which enqueues the check kernel), reads the word back into
// *first and waits for it: the one host synchronization of a checked call.
template <class Launch>
int run_check(unsigned long long* word, unsigned long long* first, cudaStream_t st,
              Launch&& launch) {
  *first = kNoError;
  cudaError_t e = cudaMemsetAsync(word, 0xff, sizeof *word, st);  // every bit set: kNoError
  if (e != cudaSuccess) return static_cast<int>(e);
  const int bad_type = launch();
  if (bad_type != 0) return bad_type;
  e = cudaGetLastError();
  if (e != cudaSuccess) return static_cast<int>(e);
  e = cudaMemcpyAsync(first, word, sizeof *first, cudaMemcpyDeviceToHost, st);
  if (e != cudaSuccess) return static_cast<int>(e);
  return static_cast<int>(cudaStreamSynchronize(st));
}

// ---- argmax / argmin -----------------------------------------------------------------------

// backends/cpu/reduce.cpp's order: v replaces the best so far when it is strictly larger
// (smaller), or when v is NaN and the best is not. A strict weak order (NaNs above every
// number, equal numbers, -0 and +0 included, tied), so scanning in increasing k and keeping
// the best on ties gives the first index of the top class.
template <class T, bool kMax>
__device__ bool better(T v, T best) {
  if constexpr (std::is_floating_point_v<T>) {
    if (v != v) return best == best;
  }
  if constexpr (kMax)
    return v > best;
  else
    return v < best;
}

// One thread per output (o, i), scanning k in order exactly as the CPU does; adjacent threads
// read adjacent inner elements (coalesced).
template <class T, bool kMax>
__global__ void arg_cols_k(int64_t* out, const T* x, int64_t outer, int64_t r, int64_t inner) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < outer * inner;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t o = t / inner, i = t % inner;
    const T* p = x + o * r * inner + i;
    T best = p[0];
    int64_t idx = 0;
    for (int64_t k = 1; k < r; ++k) {
      const T v = p[k * inner];
      if (better<T, kMax>(v, best)) {
        best = v;
        idx = k;
      }
    }
    out[t] = idx;
  }
}

// Rows (inner == 1) long enough to share: a block of kThreads per row. Each thread scans its own k
// (tid, tid + 256, ...) in increasing order, keeping the first best of them; then a tree in shared
// memory keeps, of two candidates, the better one, or the smaller index when neither is better
// (both NaN or equal). That picks the minimum of the total order (class, then index), which
// is what the sequential scan returns, whatever the tree's shape. Index -1: no candidate.
template <class T, bool kMax>
__global__ void arg_rows_k(int64_t* out, const T* x, int64_t outer, int64_t r) {
  __shared__ T best_v[kThreads];
  __shared__ int64_t best_i[kThreads];
  const unsigned tid = threadIdx.x;
  for (int64_t o = blockIdx.x; o < outer; o += gridDim.x) {
    const T* row = x + o * r;
    T bv{};
    int64_t bi = -1;
    for (int64_t k = tid; k < r; k += blockDim.x) {
      const T v = row[k];
      if (bi < 0 || better<T, kMax>(v, bv)) {
        bv = v;
        bi = k;
      }
    }
    best_v[tid] = bv;
    best_i[tid] = bi;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
      if (tid < s) {
        const T v = best_v[tid + s];
        const int64_t i = best_i[tid + s];
        const T cur = best_v[tid];
        const int64_t ci = best_i[tid];
        const bool take =
            i >= 0 && (ci < 0 || better<T, kMax>(v, cur) || (!better<T, kMax>(cur, v) && i < ci));
        if (take) {
          best_v[tid] = v;
          best_i[tid] = i;
        }
      }
      __syncthreads();
    }
    if (tid == 0) out[o] = best_i[0];
    __syncthreads();  // the next row overwrites the shared arrays
  }
}

// ---- gather / scatter_add ------------------------------------------------------------------

template <class U, class I>
__global__ void gather_k(U* out, const U* x, const I* idx, int64_t outer, int64_t n, int64_t k,
                         int64_t inner) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       t < outer * k * inner; t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = t % inner, j = (t / inner) % k, o = t / (inner * k);
    const int64_t v = idx[j];
    if (v >= 0 && v < n) out[t] = x[(o * n + v) * inner + i];
  }
}

// Accumulates v into *p atomically, with the CPU's arithmetic: IEEE adds for floats,
// wrapping adds for integers (done on the unsigned type of the same width), OR for bool.
__device__ inline void accumulate(float* p, float v) {
  atomicAdd(p, v);
}
__device__ inline void accumulate(double* p, double v) {
  atomicAdd(p, v);  // native on sm_60 and later
}
__device__ inline void accumulate(int32_t* p, int32_t v) {
  atomicAdd(reinterpret_cast<unsigned*>(p), static_cast<unsigned>(v));
}
__device__ inline void accumulate(int64_t* p, int64_t v) {
  static_assert(sizeof(int64_t) == sizeof(unsigned long long));
  atomicAdd(reinterpret_cast<unsigned long long*>(p), static_cast<unsigned long long>(v));
}
// No byte-wide atomics: u8 and bool update their byte inside the aligned 32-bit word that
// holds it (little-endian: byte b of the word is bits 8b..8b+7). The word stays inside the
// output's allocation (cudaMalloc blocks are 256-byte aligned, sized in 512-byte steps), and
// the other bytes are written back unchanged by the compare-and-swap.
__device__ inline unsigned* word_of(const void* p, unsigned* shift) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  *shift = static_cast<unsigned>(a & 3u) * 8u;
  return reinterpret_cast<unsigned*>(a & ~uintptr_t{3});
}
__device__ inline void accumulate(uint8_t* p, uint8_t v) {
  unsigned shift = 0;
  unsigned* w = word_of(p, &shift);
  unsigned old = *w, assumed = 0;
  do {
    assumed = old;
    const unsigned byte = (((assumed >> shift) & 0xffu) + v) & 0xffu;  // wraps mod 256
    old = atomicCAS(w, assumed, (assumed & ~(0xffu << shift)) | (byte << shift));
  } while (old != assumed);
}
__device__ inline void accumulate(bool* p, bool v) {
  unsigned shift = 0;
  unsigned* w = word_of(p, &shift);
  if (v) atomicOr(w, 1u << shift);  // a bool byte is 0 or 1: OR-ing 1 makes it true
}

template <class T, class I>
__global__ void scatter_add_k(T* out, const T* upd, const I* idx, int64_t outer, int64_t n,
                              int64_t k, int64_t inner) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
       t < outer * k * inner; t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = t % inner, j = (t / inner) % k, o = t / (inner * k);
    const int64_t v = idx[j];
    if (v >= 0 && v < n) accumulate(out + (o * n + v) * inner + i, upd[t]);
  }
}

}  // namespace

int first_bad_index(int index_dtype, const void* indices, int64_t k, int64_t n,
                    unsigned long long* word, unsigned long long* first, void* stream) {
  *first = kNoError;
  if (k == 0) return 0;
  auto st = static_cast<cudaStream_t>(stream);
  return run_check(word, first, st, [&] {
    return visit_index(index_dtype, [&](auto tag) {
      using I = decltype(tag);
      bad_index_k<<<blocks_for(k), kThreads, 0, st>>>(static_cast<const I*>(indices), k, n, word);
    });
  });
}

int first_zero(int elem_size, const void* x, int64_t n, unsigned long long* word,
               unsigned long long* first, void* stream) {
  *first = kNoError;
  if (n == 0) return 0;
  auto st = static_cast<cudaStream_t>(stream);
  return run_check(word, first, st, [&] {
    return visit_size(elem_size, [&](auto tag) {
      using U = decltype(tag);
      zero_k<<<blocks_for(n), kThreads, 0, st>>>(static_cast<const U*>(x), n, word);
    });
  });
}

int arg_reduce(bool is_max, int dtype, int64_t* out, const void* x, int64_t outer, int64_t r,
               int64_t inner, void* stream) {
  if (outer * inner == 0) return 0;
  if (r < 1) return static_cast<int>(cudaErrorInvalidValue);
  auto st = static_cast<cudaStream_t>(stream);
  // A row shorter than a few warps is scanned by one thread: a block would idle.
  const bool rows = inner == 1 && r >= 64;
  const int row_blocks = static_cast<int>(outer < kMaxBlocks ? outer : kMaxBlocks);
  const int bad_type = visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    const T* xp = static_cast<const T*>(x);
    auto go = [&](auto max_tag) {
      constexpr bool kMax = decltype(max_tag)::value;
      if (rows)
        arg_rows_k<T, kMax><<<row_blocks, kThreads, 0, st>>>(out, xp, outer, r);
      else
        arg_cols_k<T, kMax>
            <<<blocks_for(outer * inner), kThreads, 0, st>>>(out, xp, outer, r, inner);
    };
    if (is_max)
      go(std::true_type{});
    else
      go(std::false_type{});
  });
  if (bad_type != 0) return bad_type;
  return static_cast<int>(cudaGetLastError());
}

int gather(int elem_size, int index_dtype, void* out, const void* x, const void* indices,
           int64_t outer, int64_t n, int64_t k, int64_t inner, void* stream) {
  const int64_t total = outer * k * inner;
  if (total == 0) return 0;
  auto st = static_cast<cudaStream_t>(stream);
  int bad_type = 0;
  const int bad_size = visit_size(elem_size, [&](auto etag) {
    using U = decltype(etag);
    bad_type = visit_index(index_dtype, [&](auto itag) {
      using I = decltype(itag);
      gather_k<<<blocks_for(total), kThreads, 0, st>>>(
          static_cast<U*>(out), static_cast<const U*>(x), static_cast<const I*>(indices), outer, n,
          k, inner);
    });
  });
  if (bad_size != 0) return bad_size;
  if (bad_type != 0) return bad_type;
  return static_cast<int>(cudaGetLastError());
}

int scatter_add(int dtype, int index_dtype, void* out, const void* updates, const void* indices,
                int64_t outer, int64_t n, int64_t k, int64_t inner, void* stream) {
  const int64_t total = outer * k * inner;
  if (total == 0) return 0;
  auto st = static_cast<cudaStream_t>(stream);
  int bad_index_type = 0;
  const int bad_type = visit_dtype(dtype, [&](auto tag) {
    using T = decltype(tag);
    bad_index_type = visit_index(index_dtype, [&](auto itag) {
      using I = decltype(itag);
      scatter_add_k<<<blocks_for(total), kThreads, 0, st>>>(
          static_cast<T*>(out), static_cast<const T*>(updates), static_cast<const I*>(indices),
          outer, n, k, inner);
    });
  });
  if (bad_type != 0) return bad_type;
  if (bad_index_type != 0) return bad_index_type;
  return static_cast<int>(cudaGetLastError());
}

}  // namespace kiln::cuda::launch
