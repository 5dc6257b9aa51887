// CPU kernels of the creation primitives: full and iota.

#include <algorithm>

#include <kiln/backends/cpu/kernel_util.h>
#include <kiln/backends/cpu/parallel.h>

namespace kiln::cpu {
namespace {

std::vector<Tensor> full_kernel(std::span<const Tensor>, const Attrs& a,
                                std::span<const TensorType> out) {
  Tensor t = alloc(out[0]);
  const int64_t n = t.numel();
  const double v = a.f("value");
  visit_dtype(out[0].dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T value;
    if constexpr (std::is_same_v<T, bool>)
      value = v != 0;
    else
      value = static_cast<T>(v);
    T* p = t.mutable_data<T>();
    parallel_for(n, kElementwiseGrain * 4,
                 [&](int64_t b, int64_t e) { std::fill(p + b, p + e, value); });
  });
  return {t};
}

std::vector<Tensor> iota_kernel(std::span<const Tensor>, const Attrs& a,
                                std::span<const TensorType> out) {
  Tensor t = alloc(out[0]);
  const Shape& shape = out[0].shape;
  const int64_t n = t.numel();
  const int64_t axis = a.i("axis");
  int64_t inner = 1;
  for (int64_t d = axis + 1; d < shape.rank(); ++d)
    inner *= shape[d];
  const int64_t dim = shape[axis];
  visit_dtype(out[0].dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = t.mutable_data<T>();
    parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
      // Walk the index in runs of `inner` equal values.
      int64_t i = b;
      while (i < e) {
        const int64_t k = (i / inner) % dim;
        const int64_t run_end = std::min(e, (i / inner + 1) * inner);
        T value;
        if constexpr (std::is_same_v<T, bool>)
          value = k != 0;
        else
          value = static_cast<T>(k);
        std::fill(p + i, p + run_end, value);
        i = run_end;
      }
    });
  });
  return {t};
}

KILN_STATIC_INIT {
  register_cpu_kernel("full", full_kernel);
  register_cpu_kernel("iota", iota_kernel);
};

}  // namespace
}  // namespace kiln::cpu
