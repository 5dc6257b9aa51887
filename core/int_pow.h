#pragma once

// Integer and bool powers with the CPU's semantics, shared by the CPU kernels and the CUDA
// kernels (plain C++ with no other Kiln header, so nvcc can include it): a^b by squaring with
// wrap-around; a negative exponent gives 1 for a == 1, +-1 for a == -1 and 0 otherwise; for
// bool, a || !b.

#include <type_traits>

#ifdef __CUDACC__
#define KILN_HOST_DEVICE __host__ __device__
#else
#define KILN_HOST_DEVICE
#endif

namespace kiln {

template <class T>
KILN_HOST_DEVICE T int_pow(T a, T b) {
  if constexpr (std::is_same_v<T, bool>) {
    return a || !b;
  } else {
    if constexpr (std::is_signed_v<T>)
      if (b < 0) return a == 1 ? T(1) : a == -1 ? ((b % 2) ? T(-1) : T(1)) : T(0);
    using U = std::make_unsigned_t<T>;
    U result = 1, base = static_cast<U>(a);
    for (auto e = static_cast<U>(b); e; e >>= 1) {
      if (e & 1) result = static_cast<U>(result * base);
      base = static_cast<U>(base * base);
    }
    return static_cast<T>(result);
  }
}

}  // namespace kiln
