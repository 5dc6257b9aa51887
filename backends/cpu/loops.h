#pragma once

// The strided N-ary loop behind every elementwise kernel. The output is dense; inputs may be
// views of any strides, broadcast dims have stride 0. Dims are collapsed where every operand
// is linear across them, so the common cases (all dense; one operand a scalar; a row vector
// broadcast over a matrix) run as a few long inner loops the compiler vectorizes.

#include <array>
#include <span>
#include <vector>

#include <kiln/backends/cpu/parallel.h>
#include <kiln/core/tensor.h>

namespace kiln::cpu {

inline constexpr int kMaxLoopInputs = 3;

struct LoopPlan {
  int num_inputs = 0;
  std::vector<int64_t> shape;                                // collapsed dims, innermost last
  std::vector<std::array<int64_t, kMaxLoopInputs>> strides;  // per dim, per input (elements)
  int64_t numel = 0;
};

// Plans a loop producing a dense tensor of `out_shape` from inputs broadcast to it.
LoopPlan plan_loop(const Shape& out_shape, std::span<const Tensor> inputs);

// Calls inner(out_index, in_offsets, n, inner_strides) over runs of the innermost dim,
// splitting the elements across threads. in_offsets are element offsets into each input.
template <class Inner>
void run_loop(const LoopPlan& p, Inner&& inner, int64_t grain = kElementwiseGrain) {
  const int rank = static_cast<int>(p.shape.size());
  if (p.numel == 0) return;
  const int64_t inner_n = rank ? p.shape.back() : 1;
  std::array<int64_t, kMaxLoopInputs> inner_strides{};
  if (rank)
    for (int k = 0; k < p.num_inputs; ++k)
      inner_strides[k] = p.strides.back()[k];
  parallel_for(p.numel, grain, [&](int64_t b, int64_t e) {
    int64_t idx[16] = {};
    // Decompose b into a multi-index.
    int64_t rem = b;
    for (int d = rank - 1; d >= 0; --d) {
      idx[d] = rem % p.shape[d];
      rem /= p.shape[d];
    }
    int64_t cur = b;
    while (cur < e) {
      std::array<int64_t, kMaxLoopInputs> off{};
      for (int d = 0; d < rank; ++d)
        for (int k = 0; k < p.num_inputs; ++k)
          off[k] += idx[d] * p.strides[d][k];
      const int64_t start = rank ? idx[rank - 1] : 0;
      const int64_t n = std::min(inner_n - start, e - cur);
      inner(cur, off.data(), n, inner_strides.data());
      cur += n;
      if (rank == 0) break;
      idx[rank - 1] = 0;
      for (int d = rank - 2; d >= 0; --d) {
        if (++idx[d] < p.shape[d]) break;
        idx[d] = 0;
      }
    }
  });
}

}  // namespace kiln::cpu
