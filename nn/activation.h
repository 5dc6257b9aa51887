#pragma once

// Activations by name, as Keras spells them: Dense(128, "relu").

#include <functional>
#include <string>

#include <kiln/core/tensor.h>

namespace kiln::nn {

namespace activations {
Tensor linear(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor gelu(const Tensor& x);  // exact: x * Phi(x)
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor softmax(const Tensor& x);  // over the last axis
}  // namespace activations

class Activation {
 public:
  Activation() = default;  // linear
  // "linear", "relu", "gelu", "tanh", "sigmoid" or "softmax"; anything else is a kiln::Error
  // that lists the names.
  Activation(const char* name);         // NOLINT(google-explicit-constructor)
  Activation(const std::string& name);  // NOLINT(google-explicit-constructor)
  Activation(std::string name, std::function<Tensor(const Tensor&)> fn);

  Tensor operator()(const Tensor& x) const;
  const std::string& name() const { return name_; }
  bool is_linear() const { return name_ == "linear"; }
  // A model whose last layer ends in softmax lets its loss take the logits instead
  // (nn/model.cpp folds the two into one stable log-softmax).
  bool is_softmax() const { return name_ == "softmax"; }

 private:
  std::string name_ = "linear";
  std::function<Tensor(const Tensor&)> fn_;
};

}  // namespace kiln::nn
