#pragma once

// Initializers: functions from a variable's shape and dtype to its initial value. They draw
// from kiln::random's global generator, so kiln::random::seed makes a model reproducible.

#include <functional>

#include <kiln/core/shape.h>
#include <kiln/core/tensor.h>

namespace kiln::nn {

using Initializer = std::function<Tensor(const Shape& shape, DType dtype)>;

// Fans as Keras computes them: [in, out] for rank 2; a convolution filter (HWIO) multiplies
// both by its receptive field (H*W).
struct Fans {
  double in = 1, out = 1;
};
Fans compute_fans(const Shape& shape);

Initializer glorot_uniform();  // U(-l, l), l = sqrt(6 / (fan_in + fan_out)); Keras's default
Initializer he_normal();       // truncated N(0, sqrt(2 / fan_in)), cut at two stddevs
Initializer zeros();
Initializer ones();
Initializer constant(double value);
Initializer random_uniform(double lo = -0.05, double hi = 0.05);  // Embedding's default

}  // namespace kiln::nn
