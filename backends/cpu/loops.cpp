#include <kiln/backends/cpu/loops.h>

#include <kiln/core/error.h>

namespace kiln::cpu {

LoopPlan plan_loop(const Shape& out_shape, std::span<const Tensor> inputs) {
  LoopPlan p;
  p.num_inputs = static_cast<int>(inputs.size());
  KILN_ASSERT(p.num_inputs <= kMaxLoopInputs, "plan_loop: too many inputs");
  p.numel = out_shape.numel();
  const size_t r = out_shape.size();
  // Broadcast strides, dropping dims of size 1.
  for (size_t d = 0; d < r; ++d) {
    if (out_shape[d] == 1) continue;
    std::array<int64_t, kMaxLoopInputs> s{};
    for (int k = 0; k < p.num_inputs; ++k) {
      const Tensor& t = inputs[k];
      const int64_t lead = static_cast<int64_t>(r) - t.rank();
      const int64_t td = static_cast<int64_t>(d) - lead;
      s[k] = (td < 0 || t.shape()[td] == 1) ? 0 : t.strides()[td];
    }
    // Merge with the previous dim when every operand is linear across both.
    if (!p.shape.empty()) {
      bool merge = true;
      for (int k = 0; k < p.num_inputs; ++k)
        merge &= p.strides.back()[k] == s[k] * out_shape[d];
      if (merge) {
        p.shape.back() *= out_shape[d];
        p.strides.back() = s;
        continue;
      }
    }
    p.shape.push_back(out_shape[d]);
    p.strides.push_back(s);
  }
  KILN_CHECK(p.shape.size() <= 16, "elementwise: rank {} is more than 16", p.shape.size());
  return p;
}

}  // namespace kiln::cpu
