// CPU kernels of the fused optimizer updates: one parallel pass over the parameter.

#include <cmath>

#include <kiln/backends/cpu/kernel_util.h>
#include <kiln/backends/cpu/parallel.h>

namespace kiln::cpu {
namespace {

// The coefficients arrive in double: 1 - beta is formed before rounding to T (in f32,
// 1 - 0.999f is off by 5e-5 relative).
template <class T>
void adam_loop(int64_t n, const T* var, const T* m, const T* v, const T* g, T* var_out, T* m_out,
               T* v_out, double lr_d, double b1_d, double b2_d, double eps_d) {
  const T lr = static_cast<T>(lr_d), eps = static_cast<T>(eps_d);
  const T b1 = static_cast<T>(b1_d), c1 = static_cast<T>(1 - b1_d);
  const T b2 = static_cast<T>(b2_d), c2 = static_cast<T>(1 - b2_d);
  parallel_for(n, kElementwiseGrain, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) {
      const T mi = b1 * m[i] + c1 * g[i];
      const T vi = b2 * v[i] + c2 * g[i] * g[i];
      m_out[i] = mi;
      v_out[i] = vi;
      var_out[i] = var[i] - lr * mi / (std::sqrt(vi) + eps);
    }
  });
}

std::vector<Tensor> adam_kernel(std::span<const Tensor> in, const Attrs& a,
                                std::span<const TensorType> out) {
  const Tensor var = dense(in[0]), m = dense(in[1]), v = dense(in[2]), g = dense(in[3]);
  Tensor var_out = alloc(out[0]), m_out = alloc(out[1]), v_out = alloc(out[2]);
  visit_dtype(var.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    if constexpr (std::is_floating_point_v<T>) {
      adam_loop<T>(var.numel(), var.data<T>(), m.data<T>(), v.data<T>(), g.data<T>(),
                   var_out.mutable_data<T>(), m_out.mutable_data<T>(), v_out.mutable_data<T>(),
                   a.f("lr"), a.f("beta1"), a.f("beta2"), a.f("eps"));
    }
  });
  return {var_out, m_out, v_out};
}

KILN_STATIC_INIT {
  register_cpu_kernel("adam_update", adam_kernel);
};

}  // namespace
}  // namespace kiln::cpu
