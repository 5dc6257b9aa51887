// CPU kernels of the random-draw primitives. Element i of a draw depends only on (seed,
// offset, i): block b = offset + i / per_block is hashed with Philox 4x32-10, so the values
// are the same whatever the number of threads.

#include <cmath>
#include <numbers>

#include <kiln/backends/cpu/kernel_util.h>
#include <kiln/backends/cpu/parallel.h>
#include <kiln/core/random.h>

namespace kiln::cpu {
namespace {

inline std::array<uint32_t, 4> block(uint64_t key, uint64_t index) {
  return philox4x32_10({static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), 0u, 0u},
                       key);
}

// [0, 1) from the top 24 bits of one lane.
inline float unit_f32(uint32_t x) {
  return static_cast<float>(x >> 8) * 0x1.0p-24f;
}
// [0, 1) from 53 bits of two lanes.
inline double unit_f64(uint32_t a, uint32_t b) {
  const uint64_t v = (static_cast<uint64_t>(a) << 32 | b) >> 11;
  return static_cast<double>(v) * 0x1.0p-53;
}

constexpr int64_t kBlockGrain = 4096;

// Runs fn(values_of_block, first_element_index) for every block of the draw, in parallel.
template <class Fn>
void for_blocks(const Attrs& a, int64_t n, int64_t per_block, Fn&& fn) {
  const uint64_t key = static_cast<uint64_t>(a.i("seed"));
  const uint64_t offset = static_cast<uint64_t>(a.i("offset"));
  const int64_t blocks = (n + per_block - 1) / per_block;
  parallel_for(blocks, kBlockGrain, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      fn(block(key, offset + static_cast<uint64_t>(b)), b * per_block);
  });
}

std::vector<Tensor> uniform_kernel(std::span<const Tensor>, const Attrs& a,
                                   std::span<const TensorType> out) {
  Tensor t = alloc(out[0]);
  const int64_t n = t.numel();
  const double lo = a.f("lo"), hi = a.f("hi");
  if (out[0].dtype == DType::f32) {
    float* p = t.mutable_data<float>();
    const float flo = static_cast<float>(lo), fhi = static_cast<float>(hi);
    const float top = std::nextafter(fhi, flo);
    for_blocks(a, n, 4, [&](const std::array<uint32_t, 4>& r, int64_t i0) {
      const int64_t m = std::min<int64_t>(4, n - i0);
      for (int64_t j = 0; j < m; ++j) {
        float v = static_cast<float>(lo + (hi - lo) * static_cast<double>(unit_f32(r[j])));
        p[i0 + j] = v < fhi ? v : top;
      }
    });
  } else {
    double* p = t.mutable_data<double>();
    const double top = std::nextafter(hi, lo);
    for_blocks(a, n, 2, [&](const std::array<uint32_t, 4>& r, int64_t i0) {
      const int64_t m = std::min<int64_t>(2, n - i0);
      for (int64_t j = 0; j < m; ++j) {
        double v = lo + (hi - lo) * unit_f64(r[2 * j], r[2 * j + 1]);
        p[i0 + j] = v < hi ? v : top;
      }
    });
  }
  return {t};
}

// Box-Muller: u1 in (0, 1], u2 in [0, 1) -> two independent standard normals.
inline void box_muller(double u1, double u2, double& z0, double& z1) {
  const double r = std::sqrt(-2.0 * std::log(u1));
  const double th = 2.0 * std::numbers::pi * u2;
  z0 = r * std::cos(th);
  z1 = r * std::sin(th);
}

std::vector<Tensor> normal_kernel(std::span<const Tensor>, const Attrs& a,
                                  std::span<const TensorType> out) {
  Tensor t = alloc(out[0]);
  const int64_t n = t.numel();
  const double mean = a.f("mean"), sd = a.f("stddev");
  if (out[0].dtype == DType::f32) {
    float* p = t.mutable_data<float>();
    for_blocks(a, n, 4, [&](const std::array<uint32_t, 4>& r, int64_t i0) {
      double z[4];
      for (int k = 0; k < 2; ++k)
        box_muller(1.0 - static_cast<double>(unit_f32(r[2 * k])),
                   static_cast<double>(unit_f32(r[2 * k + 1])), z[2 * k], z[2 * k + 1]);
      const int64_t m = std::min<int64_t>(4, n - i0);
      for (int64_t j = 0; j < m; ++j)
        p[i0 + j] = static_cast<float>(mean + sd * z[j]);
    });
  } else {
    double* p = t.mutable_data<double>();
    for_blocks(a, n, 2, [&](const std::array<uint32_t, 4>& r, int64_t i0) {
      double z[2];
      box_muller(1.0 - unit_f64(r[0], r[1]), unit_f64(r[2], r[3]), z[0], z[1]);
      const int64_t m = std::min<int64_t>(2, n - i0);
      for (int64_t j = 0; j < m; ++j)
        p[i0 + j] = mean + sd * z[j];
    });
  }
  return {t};
}

std::vector<Tensor> randint_kernel(std::span<const Tensor>, const Attrs& a,
                                   std::span<const TensorType> out) {
  Tensor t = alloc(out[0]);
  const int64_t n = t.numel();
  const int64_t lo = a.i("lo");
  const uint64_t range = static_cast<uint64_t>(a.i("hi")) - static_cast<uint64_t>(lo);
  visit_dtype(out[0].dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t>) {
      T* p = t.mutable_data<T>();
      for_blocks(a, n, 2, [&](const std::array<uint32_t, 4>& r, int64_t i0) {
        const int64_t m = std::min<int64_t>(2, n - i0);
        for (int64_t j = 0; j < m; ++j) {
          const uint64_t bits = static_cast<uint64_t>(r[2 * j]) << 32 | r[2 * j + 1];
          p[i0 + j] = static_cast<T>(static_cast<uint64_t>(lo) + bits % range);
        }
      });
    }
  });
  return {t};
}

std::vector<Tensor> bernoulli_kernel(std::span<const Tensor>, const Attrs& a,
                                     std::span<const TensorType> out) {
  Tensor t = alloc(out[0]);
  const int64_t n = t.numel();
  // True when the 32-bit lane is below p * 2^32 (p == 1 always true).
  const double p = a.f("p");
  const uint64_t threshold = static_cast<uint64_t>(std::ldexp(p, 32));
  bool* o = t.mutable_data<bool>();
  for_blocks(a, n, 4, [&](const std::array<uint32_t, 4>& r, int64_t i0) {
    const int64_t m = std::min<int64_t>(4, n - i0);
    for (int64_t j = 0; j < m; ++j)
      o[i0 + j] = static_cast<uint64_t>(r[j]) < threshold;
  });
  return {t};
}

KILN_STATIC_INIT {
  register_cpu_kernel("rng_uniform", uniform_kernel);
  register_cpu_kernel("rng_normal", normal_kernel);
  register_cpu_kernel("rng_randint", randint_kernel);
  register_cpu_kernel("rng_bernoulli", bernoulli_kernel);
};

}  // namespace
}  // namespace kiln::cpu
