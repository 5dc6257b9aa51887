#pragma once

// The Keras layers. Each is a Module; names default to Keras's (dense, conv2d, ...), and a
// container makes them unique (dense_1, ...). Variables are named "<path>/kernel",
// "<path>/bias", "<path>/gamma", "<path>/beta", "<path>/moving_mean",
// "<path>/moving_variance", "<path>/embeddings".

#include <cstdint>
#include <vector>

#include <kiln/core/ops.h>
#include <kiln/nn/activation.h>
#include <kiln/nn/init.h>
#include <kiln/nn/module.h>

namespace kiln::nn {

// y = activation(x @ kernel + bias) over the last axis; inputs of any rank >= 2.
class Dense : public Module {
 public:
  explicit Dense(int64_t units, Activation activation = {}, bool use_bias = true,
                 Initializer kernel_initializer = glorot_uniform(),
                 Initializer bias_initializer = zeros());
  Tensor call(const Tensor& x, bool training) override;
  void build(const Shape& input_shape) override;
  Shape output_shape(const Shape& input_shape) const override;
  // x @ kernel + bias, without the activation (the logits when the activation is softmax).
  Tensor call_linear(const Tensor& x);

  int64_t units() const { return units_; }
  const Activation& activation() const { return activation_; }
  const Variable& kernel() const { return kernel_; }  // [in, units]
  const Variable& bias() const { return bias_; }      // [units]; undefined without a bias

 private:
  int64_t units_;
  Activation activation_;
  bool use_bias_;
  Initializer kernel_init_, bias_init_;
  Variable kernel_, bias_;
};

// NHWC inputs, HWIO kernel, TensorFlow's "valid"/"same" padding.
class Conv2D : public Module {
 public:
  Conv2D(int64_t filters, std::vector<int64_t> kernel_size, std::vector<int64_t> strides = {1, 1},
         Padding padding = Padding::valid, Activation activation = {}, bool use_bias = true,
         Initializer kernel_initializer = glorot_uniform(), Initializer bias_initializer = zeros());
  Tensor call(const Tensor& x, bool training) override;
  void build(const Shape& input_shape) override;
  Shape output_shape(const Shape& input_shape) const override;
  Tensor call_linear(const Tensor& x);

  const Activation& activation() const { return activation_; }
  const Variable& kernel() const { return kernel_; }  // [kh, kw, in, filters]
  const Variable& bias() const { return bias_; }

 private:
  int64_t filters_;
  std::vector<int64_t> kernel_size_, strides_;
  Padding padding_;
  Activation activation_;
  bool use_bias_;
  Initializer kernel_init_, bias_init_;
  Variable kernel_, bias_;
};

// Pooling over NHWC windows; strides default to the pool size, as in Keras.
class Pool2D : public Module {
 public:
  enum class Kind { max, average };
  Tensor call(const Tensor& x, bool training) override;
  Shape output_shape(const Shape& input_shape) const override;

 protected:
  Pool2D(Kind kind, std::vector<int64_t> pool_size, std::vector<int64_t> strides, Padding padding);

 private:
  Kind kind_;
  std::vector<int64_t> pool_, strides_;
  Padding padding_;
};

class MaxPool2D : public Pool2D {
 public:
  explicit MaxPool2D(std::vector<int64_t> pool_size = {2, 2}, std::vector<int64_t> strides = {},
                     Padding padding = Padding::valid)
      : Pool2D(Kind::max, std::move(pool_size), std::move(strides), padding) {}
};

// Averages over each window's in-bounds elements (TensorFlow's "same" semantics).
class AvgPool2D : public Pool2D {
 public:
  explicit AvgPool2D(std::vector<int64_t> pool_size = {2, 2}, std::vector<int64_t> strides = {},
                     Padding padding = Padding::valid)
      : Pool2D(Kind::average, std::move(pool_size), std::move(strides), padding) {}
};

// [batch, d1, d2, ...] -> [batch, d1*d2*...]; works with an unknown batch dim.
class Flatten : public Module {
 public:
  Flatten();
  Tensor call(const Tensor& x, bool training) override;
  Shape output_shape(const Shape& input_shape) const override;
};

// Inverted dropout while training (kiln::dropout), the identity otherwise.
class Dropout : public Module {
 public:
  explicit Dropout(double rate);
  Tensor call(const Tensor& x, bool training) override;
  double rate() const { return rate_; }

 private:
  double rate_;
};

// Normalizes over the last axis, then scales by gamma and shifts by beta (Keras's
// LayerNormalization, epsilon 1e-3).
class LayerNorm : public Module {
 public:
  explicit LayerNorm(double epsilon = 1e-3);
  Tensor call(const Tensor& x, bool training) override;
  void build(const Shape& input_shape) override;
  const Variable& gamma() const { return gamma_; }
  const Variable& beta() const { return beta_; }

 private:
  double epsilon_;
  Variable gamma_, beta_;
};

// Normalizes each feature (the last axis) with the batch's statistics while training, and
// with the moving ones otherwise; training updates the moving statistics
// (moving = moving * momentum + batch * (1 - momentum), with the biased batch variance, as
// Keras). The moving statistics are non-trainable variables.
class BatchNormalization : public Module {
 public:
  explicit BatchNormalization(double momentum = 0.99, double epsilon = 1e-3);
  Tensor call(const Tensor& x, bool training) override;
  void build(const Shape& input_shape) override;
  const Variable& gamma() const { return gamma_; }
  const Variable& beta() const { return beta_; }
  const Variable& moving_mean() const { return moving_mean_; }
  const Variable& moving_variance() const { return moving_variance_; }

 private:
  double momentum_, epsilon_;
  Variable gamma_, beta_, moving_mean_, moving_variance_;
};

// Integer ids [...] -> vectors [..., output_dim] by a gather from the embeddings table.
class Embedding : public Module {
 public:
  Embedding(int64_t input_dim, int64_t output_dim,
            Initializer embeddings_initializer = random_uniform());
  Tensor call(const Tensor& x, bool training) override;
  void build(const Shape& input_shape) override;
  Shape output_shape(const Shape& input_shape) const override;
  const Variable& embeddings() const { return embeddings_; }

 private:
  int64_t input_dim_, output_dim_;
  Initializer init_;
  Variable embeddings_;
};

}  // namespace kiln::nn
