#include <kiln/nn/init.h>

#include <cmath>
#include <vector>

#include <kiln/core/dispatch.h>
#include <kiln/core/ops.h>
#include <kiln/core/random.h>

namespace kiln::nn {

namespace {

void check_shape(const char* who, const Shape& shape) {
  for (int64_t d : shape)
    KILN_CHECK(d >= 0, "{}: shape {} has an unknown or negative dim", who, shape.str());
}

void check_floating(const char* who, const Shape& shape, DType dtype) {
  check_shape(who, shape);
  KILN_CHECK(is_floating(dtype), "{}: draws f32 or f64 values, not {} (shape {})", who, name(dtype),
             shape.str());
}

// Keras's truncated_normal: a standard normal with every value beyond two stddevs redrawn,
// then scaled. Redrawing happens on the host; each round redraws the ~4.6% left out of range.
Tensor truncated_normal(const Shape& shape, double stddev, DType dtype) {
  std::vector<double> z = random::normal(shape, 0, 1, f64).to_vector<double>();
  std::vector<size_t> bad;
  for (size_t i = 0; i < z.size(); ++i)
    if (std::abs(z[i]) > 2) bad.push_back(i);
  while (!bad.empty()) {
    const std::vector<double> r =
        random::normal({static_cast<int64_t>(bad.size())}, 0, 1, f64).to_vector<double>();
    std::vector<size_t> still;
    for (size_t j = 0; j < bad.size(); ++j) {
      if (std::abs(r[j]) > 2)
        still.push_back(bad[j]);
      else
        z[bad[j]] = r[j];
    }
    bad = std::move(still);
  }
  for (double& v : z)
    v *= stddev;
  return cast(from_vector(z, shape), dtype);
}

}  // namespace

Fans compute_fans(const Shape& shape) {
  // Keras's compute_fans: scalars count as one, vectors as both, and dims before the last two
  // form the receptive field.
  Fans f;
  const int64_t r = shape.rank();
  if (r == 0) return f;
  if (r == 1) {
    f.in = f.out = static_cast<double>(shape[0]);
    return f;
  }
  double field = 1;
  for (int64_t i = 0; i + 2 < r; ++i)
    field *= static_cast<double>(shape[static_cast<size_t>(i)]);
  f.in = static_cast<double>(shape[static_cast<size_t>(r - 2)]) * field;
  f.out = static_cast<double>(shape[static_cast<size_t>(r - 1)]) * field;
  return f;
}

Initializer glorot_uniform() {
  return [](const Shape& shape, DType dtype) {
    check_floating("glorot_uniform", shape, dtype);
    const Fans f = compute_fans(shape);
    // Empty shapes have zero fans; there is nothing to draw then.
    const double limit = f.in + f.out > 0 ? std::sqrt(6.0 / (f.in + f.out)) : 1.0;
    SuspendHooks eager;
    return random::uniform(shape, -limit, limit, dtype);
  };
}

Initializer he_normal() {
  return [](const Shape& shape, DType dtype) {
    check_floating("he_normal", shape, dtype);
    const Fans f = compute_fans(shape);
    // Keras divides by the stddev of a unit normal truncated at +-2, so the truncated draw
    // keeps the variance 2 / fan_in.
    const double stddev = (f.in > 0 ? std::sqrt(2.0 / f.in) : 1.0) / 0.87962566103423978;
    // The redraw loop reads values on the host, so it must run eagerly even in a trace.
    SuspendHooks eager;
    return truncated_normal(shape, stddev, dtype);
  };
}

Initializer zeros() {
  return [](const Shape& shape, DType dtype) {
    check_shape("zeros", shape);
    SuspendHooks eager;
    return kiln::zeros(shape, dtype);
  };
}

Initializer ones() {
  return [](const Shape& shape, DType dtype) {
    check_shape("ones", shape);
    SuspendHooks eager;
    return kiln::ones(shape, dtype);
  };
}

Initializer constant(double value) {
  return [value](const Shape& shape, DType dtype) {
    check_shape("constant", shape);
    SuspendHooks eager;
    return kiln::full(shape, value, dtype);
  };
}

Initializer random_uniform(double lo, double hi) {
  KILN_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi,
             "random_uniform: needs finite lo < hi, got [{}, {})", lo, hi);
  return [lo, hi](const Shape& shape, DType dtype) {
    check_floating("random_uniform", shape, dtype);
    SuspendHooks eager;
    return random::uniform(shape, lo, hi, dtype);
  };
}

}  // namespace kiln::nn
