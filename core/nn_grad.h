#pragma once

// Backward primitives of conv2d and the pooling ops (TensorFlow's Conv2DBackpropInput,
// Conv2DBackpropFilter, MaxPoolGrad and AvgPoolGrad). The VJP rules of conv2d, max_pool2d
// and avg_pool2d are written with these; they are registry primitives like any other, so a
// tape records them (higher order) and a tracer captures them. Layouts as the forward ops:
// x NHWC, filter HWIO, grad (the gradient of the forward output) NHWO / NHWC.
//
// Differentiability:
//   conv2d_backprop_input   linear in (filter, grad): VJP = conv2d_backprop_filter / conv2d
//   conv2d_backprop_filter  linear in (x, grad):      VJP = conv2d_backprop_input / conv2d
//   avg_pool2d_grad         linear in grad:           VJP = avg_pool2d
//   max_pool2d_grad         linear in grad:           VJP = max_pool2d_select
//   max_pool2d_select       linear in values:         VJP = max_pool2d_grad
//   (the routing itself is piecewise constant in x and y: they get no gradient)
//
// Max pooling routes each output's gradient to the FIRST element of its window (row-major
// over the window: top row first, then left to right) that equals the pooled value y; when y
// is NaN, to the window's first NaN. Ties therefore go to the top-left-most maximum.

#include <cstdint>
#include <vector>

#include <kiln/core/ops.h>

namespace kiln {

// The gradient of conv2d's input x of shape `input_shape`, given the filter and the gradient
// of conv2d's output.
Tensor conv2d_backprop_input(const Shape& input_shape, const Tensor& filter, const Tensor& grad,
                             std::vector<int64_t> strides = {1, 1},
                             Padding padding = Padding::valid,
                             std::vector<int64_t> dilations = {1, 1});
// The gradient of conv2d's filter of shape `filter_shape`, given the input x and the gradient
// of conv2d's output.
Tensor conv2d_backprop_filter(const Tensor& x, const Shape& filter_shape, const Tensor& grad,
                              std::vector<int64_t> strides = {1, 1},
                              Padding padding = Padding::valid,
                              std::vector<int64_t> dilations = {1, 1});
// The gradient of max_pool2d's input x, given x, the pooled output y and y's gradient.
Tensor max_pool2d_grad(const Tensor& x, const Tensor& y, const Tensor& grad,
                       std::vector<int64_t> window, std::vector<int64_t> strides,
                       Padding padding = Padding::valid);
// The adjoint of max_pool2d_grad: for each window of x, the entry of `values` (shaped like x)
// at the window's first element equal to y.
Tensor max_pool2d_select(const Tensor& x, const Tensor& y, const Tensor& values,
                         std::vector<int64_t> window, std::vector<int64_t> strides,
                         Padding padding = Padding::valid);
// The gradient of avg_pool2d's input of shape `input_shape`, given the output's gradient.
Tensor avg_pool2d_grad(const Shape& input_shape, const Tensor& grad, std::vector<int64_t> window,
                       std::vector<int64_t> strides, Padding padding = Padding::valid);

}  // namespace kiln
