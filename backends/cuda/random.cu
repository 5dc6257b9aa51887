// CUDA kernels of the random draws (uniform, randint, bernoulli): the CPU's numbers for the
// same seed and counters, bit for bit (backends/cpu/random.cpp has the layout; launch.h
// states it). Normal draws stay on the host: libdevice's log, sin and cos are not glibc's to
// the last bit.

#include <cuda_runtime.h>

#include <cstdint>

#include "grid.cuh"
#include "launch.h"

namespace kiln::cuda::launch {
namespace {

// Philox 4x32-10 of the 128-bit counter (index, 0) under the 64-bit key: core/random.cpp's
// philox4x32_10, round for round.
__device__ inline uint4 philox(uint64_t index, uint64_t key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(index), c1 = static_cast<uint32_t>(index >> 32), c2 = 0,
           c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(key), k1 = static_cast<uint32_t>(key >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint32_t hi0 = __umulhi(kM0, c0), lo0 = kM0 * c0;
    const uint32_t hi1 = __umulhi(kM1, c2), lo1 = kM1 * c2;
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
  return make_uint4(c0, c1, c2, c3);
}

__device__ inline uint32_t lane(const uint4& r, int j) {
  return j == 0 ? r.x : j == 1 ? r.y : j == 2 ? r.z : r.w;
}

// lo + (hi - lo) * u with each operation rounded on its own (no fused multiply-add).
__device__ inline double scale(double lo, double hi, double u) {
  return __dadd_rn(lo, __dmul_rn(__dsub_rn(hi, lo), u));
}

__global__ void uniform_f32_k(float* out, int64_t n, Philox p, double lo, double hi, float top) {
  const float fhi = static_cast<float>(hi);
  KILN_GRID_LOOP(b, (n + 3) / 4) {
    const uint4 r = philox(p.offset + static_cast<uint64_t>(b), p.seed);
    for (int j = 0; j < 4 && b * 4 + j < n; ++j) {
      const float u = static_cast<float>(lane(r, j) >> 8) * 0x1.0p-24f;  // exact
      const float v = __double2float_rn(scale(lo, hi, static_cast<double>(u)));
      out[b * 4 + j] = v < fhi ? v : top;
    }
  }
}

__global__ void uniform_f64_k(double* out, int64_t n, Philox p, double lo, double hi, double top) {
  KILN_GRID_LOOP(b, (n + 1) / 2) {
    const uint4 r = philox(p.offset + static_cast<uint64_t>(b), p.seed);
    for (int j = 0; j < 2 && b * 2 + j < n; ++j) {
      const uint64_t bits =
          (static_cast<uint64_t>(lane(r, 2 * j)) << 32 | lane(r, 2 * j + 1)) >> 11;
      const double v = scale(lo, hi, static_cast<double>(bits) * 0x1.0p-53);
      out[b * 2 + j] = v < hi ? v : top;
    }
  }
}

template <class T>
__global__ void randint_k(T* out, int64_t n, Philox p, int64_t lo, uint64_t range) {
  KILN_GRID_LOOP(b, (n + 1) / 2) {
    const uint4 r = philox(p.offset + static_cast<uint64_t>(b), p.seed);
    for (int j = 0; j < 2 && b * 2 + j < n; ++j) {
      const uint64_t bits = static_cast<uint64_t>(lane(r, 2 * j)) << 32 | lane(r, 2 * j + 1);
      out[b * 2 + j] = static_cast<T>(static_cast<uint64_t>(lo) + bits % range);
    }
  }
}

__global__ void bernoulli_k(bool* out, int64_t n, Philox p, uint64_t threshold) {
  KILN_GRID_LOOP(b, (n + 3) / 4) {
    const uint4 r = philox(p.offset + static_cast<uint64_t>(b), p.seed);
    for (int j = 0; j < 4 && b * 4 + j < n; ++j)
      out[b * 4 + j] = static_cast<uint64_t>(lane(r, j)) < threshold;
  }
}

}  // namespace

int rng_uniform(int dtype, void* out, int64_t n, Philox p, double lo, double hi, double top,
                void* stream) {
  if (n == 0) return 0;
  auto st = static_cast<cudaStream_t>(stream);
  if (dtype == kF32)
    uniform_f32_k<<<blocks_for((n + 3) / 4), kThreads, 0, st>>>(static_cast<float*>(out), n, p, lo,
                                                                hi, static_cast<float>(top));
  else if (dtype == kF64)
    uniform_f64_k<<<blocks_for((n + 1) / 2), kThreads, 0, st>>>(static_cast<double*>(out), n, p, lo,
                                                                hi, top);
  else
    return static_cast<int>(cudaErrorInvalidValue);
  return static_cast<int>(cudaGetLastError());
}

int rng_randint(int dtype, void* out, int64_t n, Philox p, int64_t lo, uint64_t range,
                void* stream) {
  if (n == 0) return 0;
  return visit_dtypes<kI32, kI64>(dtype, [&](auto tag) {
    using T = decltype(tag);
    randint_k<<<blocks_for((n + 1) / 2), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<T*>(out), n, p, lo, range);
  });
}

int rng_bernoulli(void* out, int64_t n, Philox p, uint64_t threshold, void* stream) {
  if (n == 0) return 0;
  bernoulli_k<<<blocks_for((n + 3) / 4), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<bool*>(out), n, p, threshold);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace kiln::cuda::launch
