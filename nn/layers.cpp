// Dense, Conv2D, the pooling layers, Flatten and Dropout. The normalization layers and
// Embedding are in layers_norm.cpp.

#include <kiln/nn/layers.h>

#include "layers_util.h"

namespace kiln::nn {

namespace {

// The spatial output size of a window op along one dim (TensorFlow's formulas); an unknown
// input size stays unknown.
int64_t window_out(const std::string& who, int64_t in, int64_t window, int64_t stride,
                   Padding padding, const Shape& input_shape) {
  if (in == -1) return -1;
  if (padding == Padding::same) return (in + stride - 1) / stride;
  KILN_CHECK(in >= window,
             "{}: input shape {} is smaller than the window {} along a spatial dim (use "
             "Padding::same or a smaller window)",
             who, input_shape.str(), window);
  return (in - window) / stride + 1;
}

Shape window_output_shape(const std::string& who, const Shape& in, const std::vector<int64_t>& win,
                          const std::vector<int64_t>& strides, Padding padding, int64_t channels) {
  detail::check_rank(who, in, 4, 4, "NHWC inputs");
  Shape out = in;
  out[1] = window_out(who, in[1], win[0], strides[0], padding, in);
  out[2] = window_out(who, in[2], win[1], strides[1], padding, in);
  if (channels != -1) out[3] = channels;
  return out;
}

// x @ kernel + bias over the last axis. matmul broadcasts the kernel over leading dims, so
// rank > 2 inputs need no reshape, and its VJP sums the kernel's gradient over them.
Tensor affine(const Tensor& x, const Variable& kernel, const Variable& bias) {
  Tensor y = matmul(x, kernel);
  return bias.defined() ? y + bias : y;
}

void check_pair(const std::string& who, const char* what, const std::vector<int64_t>& v) {
  KILN_CHECK(v.size() == 2 && v[0] > 0 && v[1] > 0,
             "{}: {} must be two positive integers, got [{}]", who, what, fmt::join(v, ","));
}

}  // namespace

// ---- Dense ---------------------------------------------------------------------------------

Dense::Dense(int64_t units, Activation activation, bool use_bias, Initializer kernel_initializer,
             Initializer bias_initializer)
    : Module("dense"),
      units_(units),
      activation_(std::move(activation)),
      use_bias_(use_bias),
      kernel_init_(std::move(kernel_initializer)),
      bias_init_(std::move(bias_initializer)) {
  KILN_CHECK(units_ > 0, "Dense: units must be positive, got {}", units_);
}

void Dense::build(const Shape& input_shape) {
  detail::check_rank(path(), input_shape, 2, -1, "inputs of rank >= 2");
  const int64_t in = input_shape.back();
  KILN_CHECK(in >= 0, "{}: the last dim of input shape {} must be known to build the kernel",
             path(), input_shape.str());
  kernel_ = add_variable("kernel", {in, units_}, kernel_init_, true, dtype());
  if (use_bias_) bias_ = add_variable("bias", {units_}, bias_init_, true, dtype());
}

Shape Dense::output_shape(const Shape& input_shape) const {
  detail::check_rank(path(), input_shape, 2, -1, "inputs of rank >= 2");
  Shape out = input_shape;
  out[out.size() - 1] = units_;
  return out;
}

Tensor Dense::call_linear(const Tensor& x) {
  const Tensor in = prepare_input(x);
  detail::check_built(*this, kernel_);
  return affine(in, kernel_, bias_);
}

Tensor Dense::call(const Tensor& x, bool training) {
  detail::check_built(*this, kernel_);
  return activation_(affine(x, kernel_, bias_));
}

// ---- Conv2D --------------------------------------------------------------------------------

Conv2D::Conv2D(int64_t filters, std::vector<int64_t> kernel_size, std::vector<int64_t> strides,
               Padding padding, Activation activation, bool use_bias,
               Initializer kernel_initializer, Initializer bias_initializer)
    : Module("conv2d"),
      filters_(filters),
      kernel_size_(std::move(kernel_size)),
      strides_(std::move(strides)),
      padding_(padding),
      activation_(std::move(activation)),
      use_bias_(use_bias),
      kernel_init_(std::move(kernel_initializer)),
      bias_init_(std::move(bias_initializer)) {
  KILN_CHECK(filters_ > 0, "Conv2D: filters must be positive, got {}", filters_);
  check_pair("Conv2D", "kernel_size", kernel_size_);
  check_pair("Conv2D", "strides", strides_);
}

void Conv2D::build(const Shape& input_shape) {
  output_shape(input_shape);  // validates the rank and that the window fits
  const int64_t in = input_shape[3];
  KILN_CHECK(in >= 0, "{}: the channel dim of input shape {} must be known to build the kernel",
             path(), input_shape.str());
  kernel_ = add_variable("kernel", {kernel_size_[0], kernel_size_[1], in, filters_}, kernel_init_,
                         true, dtype());
  if (use_bias_) bias_ = add_variable("bias", {filters_}, bias_init_, true, dtype());
}

Shape Conv2D::output_shape(const Shape& input_shape) const {
  return window_output_shape(path(), input_shape, kernel_size_, strides_, padding_, filters_);
}

Tensor Conv2D::call_linear(const Tensor& x) {
  const Tensor in = prepare_input(x);
  detail::check_built(*this, kernel_);
  Tensor y = conv2d(in, kernel_, strides_, padding_);
  return bias_.defined() ? y + bias_ : y;  // the bias broadcasts over the channel axis
}

Tensor Conv2D::call(const Tensor& x, bool training) {
  detail::check_built(*this, kernel_);
  Tensor y = conv2d(x, kernel_, strides_, padding_);
  return activation_(bias_.defined() ? y + bias_ : y);
}

// ---- pooling -------------------------------------------------------------------------------

Pool2D::Pool2D(Kind kind, std::vector<int64_t> pool_size, std::vector<int64_t> strides,
               Padding padding)
    : Module(kind == Kind::max ? "max_pooling2d" : "average_pooling2d"),
      kind_(kind),
      pool_(std::move(pool_size)),
      strides_(strides.empty() ? pool_ : std::move(strides)),
      padding_(padding) {
  const char* layer = kind == Kind::max ? "MaxPool2D" : "AvgPool2D";
  check_pair(layer, "pool_size", pool_);
  check_pair(layer, "strides", strides_);
}

Shape Pool2D::output_shape(const Shape& input_shape) const {
  return window_output_shape(path(), input_shape, pool_, strides_, padding_, -1);
}

Tensor Pool2D::call(const Tensor& x, bool training) {
  output_shape(x.shape());  // names this layer when the input does not fit
  return kind_ == Kind::max ? max_pool2d(x, pool_, strides_, padding_)
                            : avg_pool2d(x, pool_, strides_, padding_);
}

// ---- Flatten -------------------------------------------------------------------------------

Flatten::Flatten() : Module("flatten") {}

Shape Flatten::output_shape(const Shape& input_shape) const {
  detail::check_rank(path(), input_shape, 1, -1, "inputs with a batch dim");
  int64_t rest = 1;
  for (size_t i = 1; i < input_shape.size(); ++i)
    rest = input_shape[i] == -1 || rest == -1 ? -1 : rest * input_shape[i];
  return Shape{input_shape[0], rest};
}

Tensor Flatten::call(const Tensor& x, bool training) {
  const Shape out = output_shape(x.shape());
  // One unknown dim is allowed to reshape: the batch normally (a traced batch of any size),
  // otherwise the features.
  if (out[1] != -1) return reshape(x, {-1, out[1]});
  KILN_CHECK(out[0] != -1, "{}: cannot flatten {}: both the batch and the feature dims are unknown",
             path(), x.type_str());
  return reshape(x, {out[0], -1});
}

// ---- Dropout -------------------------------------------------------------------------------

Dropout::Dropout(double rate) : Module("dropout"), rate_(rate) {
  KILN_CHECK(rate_ >= 0 && rate_ < 1, "Dropout: rate must be in [0, 1), got {}", rate_);
}

Tensor Dropout::call(const Tensor& x, bool training) {
  return dropout(x, rate_, training);
}

}  // namespace kiln::nn
