#pragma once

// Shared by the losses and the metrics (losses.cpp, metrics.cpp); not installed API.

#include <utility>

#include <kiln/core/ops.h>

namespace kiln::nn::detail {

// Keras's squeeze_or_expand_to_same_rank: when the ranks differ by one and the larger has a
// trailing dim of 1, that dim is dropped (or a rank-1 partner gains one), so [B] labels meet
// [B, 1] predictions. A scalar partner is left alone (the shape checks then report it).
inline std::pair<Tensor, Tensor> match_ranks(Tensor a, Tensor b) {
  const int64_t ra = a.rank(), rb = b.rank();
  if (ra == rb + 1 && rb >= 1 && a.shape().back() == 1) {
    if (rb == 1)
      b = expand_dims(b, -1);
    else
      a = squeeze(a, -1);
  } else if (rb == ra + 1 && ra >= 1 && b.shape().back() == 1) {
    if (ra == 1)
      a = expand_dims(a, -1);
    else
      b = squeeze(b, -1);
  }
  return {std::move(a), std::move(b)};
}

}  // namespace kiln::nn::detail
