// Backward primitives of conv2d, max_pool2d and avg_pool2d: declarations, shape inference
// and public entry points (core/nn_grad.h). CPU kernels: backends/cpu/conv_grad.cpp; VJP
// rules: autograd/vjp_nn.cpp.
//
// Attributes: strides, dilations (conv only), window (pooling only), padding ("SAME" or
// "VALID", TensorFlow's rule), and the shape of the tensor whose gradient is produced:
// input_sizes [N,H,W,C] (conv2d_backprop_input, avg_pool2d_grad) or filter_sizes [KH,KW,C,O]
// (conv2d_backprop_filter). Dims of -1 (symbolic shapes) pass the consistency checks.

#include <string>

#include <fmt/ranges.h>

#include <kiln/core/dispatch.h>
#include <kiln/core/nn_grad.h>
#include <kiln/core/registry.h>
#include <kiln/core/window_util.h>

namespace kiln {
namespace {

using detail::check_padding;
using detail::check_pair;
using detail::check_public_pair;
using detail::padding_str;
using detail::tstr;
using detail::window_out;

constexpr char kConvInput[] = "conv2d_backprop_input";
constexpr char kConvFilter[] = "conv2d_backprop_filter";
constexpr char kMaxPoolGrad[] = "max_pool2d_grad";
constexpr char kMaxPoolSelect[] = "max_pool2d_select";
constexpr char kAvgPoolGrad[] = "avg_pool2d_grad";

bool dim_eq(int64_t a, int64_t b) {
  return a < 0 || b < 0 || a == b;
}

Shape sizes_attr(const Attrs& a, const char* attr, const char* op, const std::string& what) {
  KILN_CHECK(a.has(attr), "{}: missing attribute '{}' ({})", op, attr, what);
  const auto& v = a.ints(attr);
  KILN_CHECK(v.size() == 4, "{}: {} must have 4 dims, got [{}] ({})", op, attr, fmt::join(v, ","),
             what);
  for (int64_t d : v)
    KILN_CHECK(d >= -1, "{}: {} has a negative dim: [{}] ({})", op, attr, fmt::join(v, ","), what);
  return Shape(v);
}

void check_floating(DType t, const char* op, const std::string& what) {
  KILN_CHECK(is_floating(t), "{}: gradients need a floating dtype (f32 or f64): {}", op, what);
}

// The spatial output size of a window op over an input [N,H,W,C].
std::pair<int64_t, int64_t> out_hw(const Shape& in, int64_t kh, int64_t kw, const Attrs& a,
                                   bool dilated) {
  const auto& s = a.ints("strides");
  const int64_t dh = dilated ? a.ints("dilations")[0] : 1;
  const int64_t dw = dilated ? a.ints("dilations")[1] : 1;
  const std::string& pad = a.str("padding");
  return {window_out(in[1], kh, s[0], dh, pad), window_out(in[2], kw, s[1], dw, pad)};
}

// inputs: filter [KH,KW,C,O], grad [N,OH,OW,O]; attr input_sizes [N,H,W,C] -> [N,H,W,C]
std::vector<TensorType> infer_conv_input(const OpDef& def, std::span<const TensorType> in,
                                         const Attrs& a) {
  const char* op = def.name().c_str();
  const TensorType& w = in[0];
  const TensorType& g = in[1];
  std::string what = fmt::format("filter {}, grad {}", tstr(w), tstr(g));
  const Shape x = sizes_attr(a, "input_sizes", op, what);
  what += fmt::format(", input_sizes {}", x.str());
  KILN_CHECK(w.shape.rank() == 4, "{}: filter must be HWIO (rank 4): {}", op, what);
  KILN_CHECK(g.shape.rank() == 4, "{}: grad must be NHWC (rank 4): {}", op, what);
  KILN_CHECK(w.dtype == g.dtype, "{}: operands have different dtypes: {}", op, what);
  check_floating(g.dtype, op, what);
  check_pair(a, "strides", op, what);
  check_pair(a, "dilations", op, what);
  check_padding(a, op);
  KILN_CHECK(dim_eq(x[3], w.shape[2]),
             "{}: input channels differ: input has {}, filter expects {}: {}", op, x[3], w.shape[2],
             what);
  KILN_CHECK(dim_eq(g.shape[3], w.shape[3]),
             "{}: output channels differ: grad has {}, filter has {}: {}", op, g.shape[3],
             w.shape[3], what);
  const auto [oh, ow] = out_hw(x, w.shape[0], w.shape[1], a, true);
  KILN_CHECK(dim_eq(g.shape[0], x[0]) && dim_eq(g.shape[1], oh) && dim_eq(g.shape[2], ow),
             "{}: grad must have shape [{},{},{},{}] (conv2d's output): {}", op, x[0], oh, ow,
             w.shape[3], what);
  // Unknown sizes (from a traced x with unknown dims) are resolved from the operands.
  Shape out = x;
  if (out[0] < 0) out[0] = g.shape[0];
  if (out[3] < 0) out[3] = w.shape[2];
  return {TensorType{g.dtype, out}};
}

// inputs: x [N,H,W,C], grad [N,OH,OW,O]; attr filter_sizes [KH,KW,C,O] -> [KH,KW,C,O]
std::vector<TensorType> infer_conv_filter(const OpDef& def, std::span<const TensorType> in,
                                          const Attrs& a) {
  const char* op = def.name().c_str();
  const TensorType& x = in[0];
  const TensorType& g = in[1];
  std::string what = fmt::format("x {}, grad {}", tstr(x), tstr(g));
  const Shape w = sizes_attr(a, "filter_sizes", op, what);
  what += fmt::format(", filter_sizes {}", w.str());
  KILN_CHECK(x.shape.rank() == 4, "{}: x must be NHWC (rank 4): {}", op, what);
  KILN_CHECK(g.shape.rank() == 4, "{}: grad must be NHWC (rank 4): {}", op, what);
  KILN_CHECK(x.dtype == g.dtype, "{}: operands have different dtypes: {}", op, what);
  check_floating(g.dtype, op, what);
  check_pair(a, "strides", op, what);
  check_pair(a, "dilations", op, what);
  check_padding(a, op);
  KILN_CHECK(w[0] > 0 && w[1] > 0, "{}: the filter window must be positive: {}", op, what);
  KILN_CHECK(dim_eq(x.shape[3], w[2]), "{}: input channels differ: x has {}, filter expects {}: {}",
             op, x.shape[3], w[2], what);
  const auto [oh, ow] = out_hw(x.shape, w[0], w[1], a, true);
  KILN_CHECK(dim_eq(g.shape[0], x.shape[0]) && dim_eq(g.shape[1], oh) && dim_eq(g.shape[2], ow) &&
                 dim_eq(g.shape[3], w[3]),
             "{}: grad must have shape [{},{},{},{}] (conv2d's output): {}", op, x.shape[0], oh, ow,
             w[3], what);
  Shape out = w;
  if (out[2] < 0) out[2] = x.shape[3];
  if (out[3] < 0) out[3] = g.shape[3];
  return {TensorType{g.dtype, out}};
}

void check_window(const Attrs& a, const char* op, const std::string& what) {
  check_pair(a, "window", op, what);
  check_pair(a, "strides", op, what);
  check_padding(a, op);
}

// inputs: x [N,H,W,C], y and grad [N,OH,OW,C] -> [N,H,W,C]. max_pool2d_select takes
// (x, y, values [N,H,W,C]) and returns y's shape, so it is checked as the grad of (x, y, y).
std::vector<TensorType> infer_max_pool_grad(const OpDef& def, std::span<const TensorType> in,
                                            const Attrs& a) {
  const char* op = def.name().c_str();
  const TensorType& x = in[0];
  const TensorType& y = in[1];
  const TensorType& g = in[2];
  const std::string what = fmt::format("x {}, y {}, grad {}", tstr(x), tstr(y), tstr(g));
  KILN_CHECK(x.shape.rank() == 4, "{}: x must be NHWC (rank 4): {}", op, what);
  KILN_CHECK(x.dtype == y.dtype && x.dtype == g.dtype, "{}: operands have different dtypes: {}", op,
             what);
  check_floating(g.dtype, op, what);
  check_window(a, op, what);
  const auto& k = a.ints("window");
  const auto [oh, ow] = out_hw(x.shape, k[0], k[1], a, false);
  for (const TensorType* t : {&y, &g})
    KILN_CHECK(t->shape.rank() == 4 && dim_eq(t->shape[0], x.shape[0]) && dim_eq(t->shape[1], oh) &&
                   dim_eq(t->shape[2], ow) && dim_eq(t->shape[3], x.shape[3]),
               "{}: y and grad must have shape [{},{},{},{}] (max_pool2d's output): {}", op,
               x.shape[0], oh, ow, x.shape[3], what);
  return {TensorType{x.dtype, x.shape}};
}

std::vector<TensorType> infer_max_pool_select(const OpDef& def, std::span<const TensorType> in,
                                              const Attrs& a) {
  bool same = in[2].shape.rank() == in[0].shape.rank();
  for (int64_t d = 0; same && d < in[0].shape.rank(); ++d)
    same = dim_eq(in[2].shape[d], in[0].shape[d]);
  KILN_CHECK(in[2].dtype == in[0].dtype && same, "{}: values {} must match x {}", def.name(),
             tstr(in[2]), tstr(in[0]));
  const TensorType as_grad[3] = {in[0], in[1], in[1]};
  infer_max_pool_grad(def, as_grad, a);
  return {in[1]};
}

// inputs: grad [N,OH,OW,C]; attr input_sizes [N,H,W,C] -> [N,H,W,C]
std::vector<TensorType> infer_avg_pool_grad(const OpDef& def, std::span<const TensorType> in,
                                            const Attrs& a) {
  const char* op = def.name().c_str();
  const TensorType& g = in[0];
  std::string what = fmt::format("grad {}", tstr(g));
  const Shape x = sizes_attr(a, "input_sizes", op, what);
  what += fmt::format(", input_sizes {}", x.str());
  KILN_CHECK(g.shape.rank() == 4, "{}: grad must be NHWC (rank 4): {}", op, what);
  check_floating(g.dtype, op, what);
  check_window(a, op, what);
  const auto& k = a.ints("window");
  const auto [oh, ow] = out_hw(x, k[0], k[1], a, false);
  KILN_CHECK(dim_eq(g.shape[0], x[0]) && dim_eq(g.shape[1], oh) && dim_eq(g.shape[2], ow) &&
                 dim_eq(g.shape[3], x[3]),
             "{}: grad must have shape [{},{},{},{}] (avg_pool2d's output): {}", op, x[0], oh, ow,
             x[3], what);
  Shape out = x;
  if (out[0] < 0) out[0] = g.shape[0];
  if (out[3] < 0) out[3] = g.shape[3];
  return {TensorType{g.dtype, out}};
}

std::vector<int64_t> dims_of(const Shape& s) {
  return std::vector<int64_t>(s.begin(), s.end());
}

Attrs conv_attrs(const char* sizes_name, const Shape& sizes, std::vector<int64_t> strides,
                 Padding padding, std::vector<int64_t> dilations, const char* op) {
  check_public_pair(strides, "strides", op);
  check_public_pair(dilations, "dilations", op);
  return Attrs{{sizes_name, dims_of(sizes)},
               {"strides", std::move(strides)},
               {"dilations", std::move(dilations)},
               {"padding", std::string(padding_str(padding))}};
}

Attrs pool_attrs(std::vector<int64_t> window, std::vector<int64_t> strides, Padding padding,
                 const char* op) {
  check_public_pair(window, "window", op);
  check_public_pair(strides, "strides", op);
  return Attrs{{"window", std::move(window)},
               {"strides", std::move(strides)},
               {"padding", std::string(padding_str(padding))}};
}

}  // namespace

KILN_STATIC_INIT {
  registry()
      .mutable_op(kConvInput)
      .set_num_inputs(2)
      .set_flags(kContraction)
      .set_infer(infer_conv_input)
      .set_doc(
          "Gradient of conv2d's input: inputs (filter HWIO, grad NHWO); attrs input_sizes, "
          "strides, dilations, padding.");
  registry()
      .mutable_op(kConvFilter)
      .set_num_inputs(2)
      .set_flags(kContraction)
      .set_infer(infer_conv_filter)
      .set_doc(
          "Gradient of conv2d's filter: inputs (x NHWC, grad NHWO); attrs filter_sizes, "
          "strides, dilations, padding.");
  registry()
      .mutable_op(kMaxPoolGrad)
      .set_num_inputs(3)
      .set_infer(infer_max_pool_grad)
      .set_doc(
          "Gradient of max_pool2d's input: inputs (x, y, grad); each window's gradient goes to "
          "its first element equal to y. Linear in grad (its VJP is max_pool2d_select).");
  registry()
      .mutable_op(kMaxPoolSelect)
      .set_num_inputs(3)
      .set_infer(infer_max_pool_select)
      .set_doc(
          "The adjoint of max_pool2d_grad: inputs (x, y, values shaped like x); each window of x "
          "picks the value at its first element equal to y. Linear in values.");
  registry()
      .mutable_op(kAvgPoolGrad)
      .set_num_inputs(1)
      .set_infer(infer_avg_pool_grad)
      .set_doc(
          "Gradient of avg_pool2d's input: input grad; attrs input_sizes, window, strides, "
          "padding.");
};

Tensor conv2d_backprop_input(const Shape& input_shape, const Tensor& filter, const Tensor& grad,
                             std::vector<int64_t> strides, Padding padding,
                             std::vector<int64_t> dilations) {
  static const OpDef& op = registry().op(kConvInput);
  return dispatch1(op, {filter, grad},
                   conv_attrs("input_sizes", input_shape, std::move(strides), padding,
                              std::move(dilations), kConvInput));
}

Tensor conv2d_backprop_filter(const Tensor& x, const Shape& filter_shape, const Tensor& grad,
                              std::vector<int64_t> strides, Padding padding,
                              std::vector<int64_t> dilations) {
  static const OpDef& op = registry().op(kConvFilter);
  return dispatch1(op, {x, grad},
                   conv_attrs("filter_sizes", filter_shape, std::move(strides), padding,
                              std::move(dilations), kConvFilter));
}

Tensor max_pool2d_select(const Tensor& x, const Tensor& y, const Tensor& values,
                         std::vector<int64_t> window, std::vector<int64_t> strides,
                         Padding padding) {
  static const OpDef& op = registry().op(kMaxPoolSelect);
  return dispatch1(op, {x, y, values},
                   pool_attrs(std::move(window), std::move(strides), padding, kMaxPoolSelect));
}

Tensor max_pool2d_grad(const Tensor& x, const Tensor& y, const Tensor& grad,
                       std::vector<int64_t> window, std::vector<int64_t> strides, Padding padding) {
  static const OpDef& op = registry().op(kMaxPoolGrad);
  return dispatch1(op, {x, y, grad},
                   pool_attrs(std::move(window), std::move(strides), padding, kMaxPoolGrad));
}

Tensor avg_pool2d_grad(const Shape& input_shape, const Tensor& grad, std::vector<int64_t> window,
                       std::vector<int64_t> strides, Padding padding) {
  static const OpDef& op = registry().op(kAvgPoolGrad);
  Attrs attrs = pool_attrs(std::move(window), std::move(strides), padding, kAvgPoolGrad);
  attrs.set("input_sizes", dims_of(input_shape));
  return dispatch1(op, {grad}, attrs);
}

}  // namespace kiln
