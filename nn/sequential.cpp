#include <fmt/format.h>

#include <kiln/core/error.h>
#include <kiln/core/ops.h>
#include <kiln/nn/layers.h>
#include <kiln/nn/model.h>

namespace kiln::nn {

Sequential::Sequential(std::vector<Ref<Module>> layers, std::string name) : Model(std::move(name)) {
  for (auto& layer : layers)
    add(std::move(layer));
}

void Sequential::add(Ref<Module> layer) {
  KILN_CHECK(layer, "Sequential ({}): add() of an empty layer", name());
  KILN_CHECK(!built(), "Sequential ({}): add() after the model was built", name());
  layer->set_name(unique_name(layer->name(), layers_));
  layer->set_scope(path());
  layers_.push_back(layer);
  add_child(layer);
}

void Sequential::build(const Shape& input_shape) {
  Shape s = input_shape;
  for (const auto& layer : layers_) {
    layer->ensure_built(s);
    s = layer->output_shape(s);
  }
}

Shape Sequential::output_shape(const Shape& input_shape) const {
  Shape s = input_shape;
  for (const auto& layer : layers_)
    s = layer->output_shape(s);
  return s;
}

Tensor Sequential::call(const Tensor& x, bool training) {
  KILN_CHECK(!layers_.empty(), "Sequential ({}): called with no layers", name());
  Tensor h = x;
  for (const auto& layer : layers_)
    h = (*layer)(h, training);
  return h;
}

std::optional<Tensor> Sequential::call_logits(const Tensor& x, bool training) {
  if (layers_.empty()) return std::nullopt;
  Module* last = layers_.back().get();
  auto* dense = dynamic_cast<Dense*>(last);
  auto* conv = dynamic_cast<Conv2D*>(last);
  const bool softmax_end =
      (dense && dense->activation().is_softmax()) || (conv && conv->activation().is_softmax());
  if (!softmax_end) return std::nullopt;
  Shape s = x.shape();
  s[0] = -1;
  ensure_built(s, is_floating(x.dtype()) ? std::optional<DType>(x.dtype()) : std::nullopt);
  Tensor h = x;
  for (size_t i = 0; i + 1 < layers_.size(); ++i)
    h = (*layers_[i])(h, training);
  return dense ? dense->call_linear(h) : conv->call_linear(h);
}

std::string Sequential::summary() const {
  std::string out = fmt::format("Model: \"{}\"\n{:<28}{:<24}{:>12}\n", name(), "Layer (type)",
                                "Output Shape", "Param #");
  int64_t total = 0;
  Shape s = built() ? input_shape() : Shape();
  for (const auto& layer : layers_) {
    int64_t params = 0;
    for (const Variable& v : layer->variables())
      params += v.shape().numel();
    total += params;
    std::string shape = "?";
    if (built()) {
      s = layer->output_shape(s);
      shape = s.str();
    }
    out += fmt::format("{:<28}{:<24}{:>12}\n", layer->name(), shape, params);
  }
  out += fmt::format("Total params: {}\n", total);
  return out;
}

}  // namespace kiln::nn
