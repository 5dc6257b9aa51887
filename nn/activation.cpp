#include <kiln/nn/activation.h>

#include <array>
#include <utility>

#include <kiln/core/error.h>
#include <kiln/core/ops.h>

namespace kiln::nn {

namespace activations {
Tensor linear(const Tensor& x) {
  return x;
}
Tensor relu(const Tensor& x) {
  return kiln::relu(x);
}
Tensor gelu(const Tensor& x) {
  return kiln::gelu(x);
}
Tensor tanh(const Tensor& x) {
  return kiln::tanh(x);
}
Tensor sigmoid(const Tensor& x) {
  return kiln::sigmoid(x);
}
Tensor softmax(const Tensor& x) {
  return kiln::softmax(x, -1);
}
}  // namespace activations

namespace {

using Fn = Tensor (*)(const Tensor&);
constexpr std::array<std::pair<const char*, Fn>, 6> kActivations{{
    {"linear", activations::linear},
    {"relu", activations::relu},
    {"gelu", activations::gelu},
    {"tanh", activations::tanh},
    {"sigmoid", activations::sigmoid},
    {"softmax", activations::softmax},
}};

Fn lookup(const std::string& name) {
  for (const auto& [n, fn] : kActivations)
    if (name == n) return fn;
  std::string names;
  for (const auto& [n, fn] : kActivations)
    names += (names.empty() ? "" : ", ") + std::string("\"") + n + "\"";
  KILN_FAIL("Activation: unknown activation \"{}\"; the names are {}", name, names);
}

}  // namespace

Activation::Activation(const char* name)
    : Activation(std::string(name != nullptr ? name : "(null)")) {}

Activation::Activation(const std::string& name) : name_(name), fn_(lookup(name)) {}

Activation::Activation(std::string name, std::function<Tensor(const Tensor&)> fn)
    : name_(std::move(name)), fn_(std::move(fn)) {
  KILN_CHECK(static_cast<bool>(fn_), "Activation: '{}' was given an empty function", name_);
  KILN_CHECK(!name_.empty(), "Activation: a custom activation needs a name");
  // Models trust the built-in names (a final "softmax" is folded into the loss), so a custom
  // function may not borrow one.
  for (const auto& [n, f] : kActivations)
    KILN_CHECK(name_ != n,
               "Activation: a custom activation cannot be named \"{}\", a built-in name; use "
               "Activation(\"{}\") for the built-in one",
               name_, name_);
}

Tensor Activation::operator()(const Tensor& x) const {
  if (!fn_) return x;  // default-constructed: linear
  return fn_(x);
}

}  // namespace kiln::nn
