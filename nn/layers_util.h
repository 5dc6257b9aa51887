#pragma once

// Checks shared by the layer implementations (layers.cpp, layers_norm.cpp); not installed API.

#include <string>

#include <kiln/nn/module.h>

namespace kiln::nn::detail {

// Input rank in [lo, hi] (hi = -1: no upper bound), else a kiln::Error naming the layer.
inline void check_rank(const std::string& who, const Shape& shape, int64_t lo, int64_t hi,
                       const char* expects) {
  KILN_CHECK(shape.rank() >= lo && (hi < 0 || shape.rank() <= hi),
             "{}: expects {}, got shape {} (rank {})", who, expects, shape.str(), shape.rank());
}

// call() on a layer that was never built: point at operator(), which builds.
inline void check_built(const Module& m, const Variable& v) {
  KILN_CHECK(v.defined(),
             "{}: call() before the layer was built; call the layer itself (layer(x)), which "
             "builds it on first use",
             m.path());
}

}  // namespace kiln::nn::detail
