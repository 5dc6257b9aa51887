// LayerNorm, BatchNormalization and Embedding.

#include <cmath>
#include <numeric>

#include <kiln/nn/layers.h>

#include "layers_util.h"

namespace kiln::nn {

namespace {

// The feature (last) dim, which sizes gamma and beta: it must be known at build time.
int64_t feature_dim(const std::string& who, const Shape& input_shape, int64_t min_rank) {
  detail::check_rank(who, input_shape, min_rank, -1,
                     min_rank == 1 ? "inputs of rank >= 1" : "inputs of rank >= 2");
  const int64_t f = input_shape.back();
  KILN_CHECK(f >= 0, "{}: the last dim of input shape {} must be known to build", who,
             input_shape.str());
  return f;
}

}  // namespace

// ---- LayerNorm -----------------------------------------------------------------------------

LayerNorm::LayerNorm(double epsilon) : Module("layer_normalization"), epsilon_(epsilon) {
  KILN_CHECK(std::isfinite(epsilon_) && epsilon_ > 0, "LayerNorm: epsilon must be > 0, got {}",
             epsilon_);
}

void LayerNorm::build(const Shape& input_shape) {
  const int64_t f = feature_dim(path(), input_shape, 1);
  gamma_ = add_variable("gamma", {f}, ones(), true, dtype());
  beta_ = add_variable("beta", {f}, zeros(), true, dtype());
}

Tensor LayerNorm::call(const Tensor& x, bool training) {
  detail::check_built(*this, gamma_);
  const Tensor mu = mean(x, {-1}, true);
  const Tensor v = var(x, {-1}, true);
  return (x - mu) * rsqrt(v + epsilon_) * gamma_ + beta_;
}

// ---- BatchNormalization --------------------------------------------------------------------

BatchNormalization::BatchNormalization(double momentum, double epsilon)
    : Module("batch_normalization"), momentum_(momentum), epsilon_(epsilon) {
  KILN_CHECK(momentum_ >= 0 && momentum_ <= 1,
             "BatchNormalization: momentum must be in [0, 1], got {}", momentum_);
  KILN_CHECK(std::isfinite(epsilon_) && epsilon_ > 0,
             "BatchNormalization: epsilon must be > 0, got {}", epsilon_);
}

void BatchNormalization::build(const Shape& input_shape) {
  const int64_t f = feature_dim(path(), input_shape, 2);
  gamma_ = add_variable("gamma", {f}, ones(), true, dtype());
  beta_ = add_variable("beta", {f}, zeros(), true, dtype());
  moving_mean_ = add_variable("moving_mean", {f}, zeros(), false, dtype());
  moving_variance_ = add_variable("moving_variance", {f}, ones(), false, dtype());
}

Tensor BatchNormalization::call(const Tensor& x, bool training) {
  detail::check_built(*this, gamma_);
  // Keras: a frozen BatchNormalization runs in inference mode even when training, so
  // fine-tuning does not disturb its statistics.
  if (!training || !trainable())
    return (x - moving_mean_) * rsqrt(moving_variance_.value() + epsilon_) * gamma_ + beta_;
  std::vector<int64_t> axes(static_cast<size_t>(x.rank() - 1));
  std::iota(axes.begin(), axes.end(), 0);
  const Tensor mu = mean(x, axes);
  const Tensor v = var(x, axes);  // biased (ddof 0), as Keras
  // State updates are not differentiated: the statistics enter the moving averages as values.
  moving_mean_.assign(moving_mean_ * momentum_ + stop_gradient(mu) * (1 - momentum_));
  moving_variance_.assign(moving_variance_ * momentum_ + stop_gradient(v) * (1 - momentum_));
  return (x - mu) * rsqrt(v + epsilon_) * gamma_ + beta_;
}

// ---- Embedding -----------------------------------------------------------------------------

Embedding::Embedding(int64_t input_dim, int64_t output_dim, Initializer embeddings_initializer)
    : Module("embedding"),
      input_dim_(input_dim),
      output_dim_(output_dim),
      init_(std::move(embeddings_initializer)) {
  KILN_CHECK(input_dim_ > 0 && output_dim_ > 0,
             "Embedding: input_dim and output_dim must be positive, got {} and {}", input_dim_,
             output_dim_);
  // Ids are never cast to the layer's float dtype: a float id is a mistake to report.
  set_autocast(false);
}

void Embedding::build(const Shape& input_shape) {
  embeddings_ = add_variable("embeddings", {input_dim_, output_dim_}, init_, true, dtype());
}

Shape Embedding::output_shape(const Shape& input_shape) const {
  Shape out = input_shape;
  out.push_back(output_dim_);
  return out;
}

Tensor Embedding::call(const Tensor& x, bool training) {
  detail::check_built(*this, embeddings_);
  KILN_CHECK(is_integral(x.dtype()), "{}: ids must be integers (i32, i64 or u8), got {}", path(),
             x.type_str());
  const Tensor ids = x.dtype() == u8 ? cast(x, i32) : x;
  try {
    return gather(embeddings_, ids, 0);
  } catch (const Error& e) {
    // gather reports an out-of-range id; say which layer and table it was.
    KILN_FAIL("{}: ids must be in [0, {}) for embeddings {}[{},{}]: {}", path(), input_dim_,
              kiln::name(dtype()), input_dim_, output_dim_, e.what());
  }
}

}  // namespace kiln::nn
