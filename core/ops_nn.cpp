// Contractions and windowed ops: matmul (DESIGN's dot_general), conv2d, max_pool2d and
// avg_pool2d. Shape inference and the public entry points live here; the CPU kernels are in
// backends/cpu/linalg.cpp and backends/cpu/conv.cpp.

#include <string>

#include <fmt/ranges.h>

#include <kiln/core/dispatch.h>
#include <kiln/core/ops.h>
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

// ---- matmul ------------------------------------------------------------------------------
// NumPy semantics: a 1-D operand is promoted to a matrix ([K] -> [1,K] for a, [K,1] for b) and
// the added dim dropped from the result; batch dims broadcast.
std::vector<TensorType> infer_matmul(const OpDef&, std::span<const TensorType> in, const Attrs&) {
  const TensorType& a = in[0];
  const TensorType& b = in[1];
  KILN_CHECK(a.shape.rank() >= 1 && b.shape.rank() >= 1,
             "matmul: operands must have rank >= 1: a {} vs b {}", tstr(a), tstr(b));
  KILN_CHECK(a.dtype == b.dtype, "matmul: operands have different dtypes: a {} vs b {}", tstr(a),
             tstr(b));
  const int64_t ra = a.shape.rank(), rb = b.shape.rank();
  const int64_t ka = a.shape[static_cast<size_t>(ra - 1)];
  const int64_t kb = rb == 1 ? b.shape[0] : b.shape[static_cast<size_t>(rb - 2)];
  KILN_CHECK(ka == kb || ka < 0 || kb < 0, "matmul: inner dimensions differ: a {} vs b {}", tstr(a),
             tstr(b));
  Shape batch_a(std::vector<int64_t>(a.shape.begin(), a.shape.end() - std::min<int64_t>(ra, 2)));
  Shape batch_b(std::vector<int64_t>(b.shape.begin(), b.shape.end() - std::min<int64_t>(rb, 2)));
  for (int64_t i = 1; i <= std::min(batch_a.rank(), batch_b.rank()); ++i) {
    const int64_t da = batch_a[static_cast<size_t>(batch_a.rank() - i)];
    const int64_t db = batch_b[static_cast<size_t>(batch_b.rank() - i)];
    KILN_CHECK(da == db || da == 1 || db == 1 || da < 0 || db < 0,
               "matmul: batch dimensions do not broadcast: a {} vs b {}", tstr(a), tstr(b));
  }
  Shape out = broadcast_shapes(batch_a, batch_b, "matmul");
  if (ra >= 2) out.push_back(a.shape[static_cast<size_t>(ra - 2)]);
  if (rb >= 2) out.push_back(b.shape[static_cast<size_t>(rb - 1)]);
  return {TensorType{a.dtype, out}};
}

// matmul_bias_act(a, b, bias) {act}: the JIT's fusion of matmul, a bias add and an optional
// relu into one library call (oneDNN post-ops). a [M,K], b [K,N], bias [N]; f32.
std::vector<TensorType> infer_matmul_bias_act(const OpDef& op, std::span<const TensorType> in,
                                              const Attrs& attrs) {
  const TensorType& a = in[0];
  const TensorType& b = in[1];
  const TensorType& bias = in[2];
  KILN_CHECK(a.shape.rank() == 2 && b.shape.rank() == 2 && a.dtype == DType::f32 &&
                 b.dtype == DType::f32 && bias.dtype == DType::f32,
             "matmul_bias_act: needs f32 matrices: a {}, b {}, bias {}", tstr(a), tstr(b),
             tstr(bias));
  const std::string& act = attrs.str("act");
  KILN_CHECK(act == "none" || act == "relu", "matmul_bias_act: unknown activation '{}'", act);
  std::vector<TensorType> out = infer_matmul(op, in.subspan(0, 2), attrs);
  const int64_t n = out[0].shape[1];
  KILN_CHECK(bias.shape.rank() == 1 && (bias.shape[0] == n || bias.shape[0] < 0 || n < 0),
             "matmul_bias_act: bias {} does not match the product {}", tstr(bias), tstr(out[0]));
  return out;
}

// ---- windows (conv and pooling) ----------------------------------------------------------
std::vector<TensorType> infer_conv2d(const OpDef&, std::span<const TensorType> in, const Attrs& a) {
  const TensorType& x = in[0];
  const TensorType& w = in[1];
  const std::string what = fmt::format("x {}, filter {}", tstr(x), tstr(w));
  KILN_CHECK(x.shape.rank() == 4, "conv2d: x must be NHWC (rank 4): {}", what);
  KILN_CHECK(w.shape.rank() == 4, "conv2d: filter must be HWIO (rank 4): {}", what);
  KILN_CHECK(x.dtype == w.dtype, "conv2d: operands have different dtypes: {}", what);
  KILN_CHECK(x.shape[3] == w.shape[2] || x.shape[3] < 0 || w.shape[2] < 0,
             "conv2d: input channels differ: x has {}, filter expects {}: {}", x.shape[3],
             w.shape[2], what);
  check_pair(a, "strides", "conv2d", what);
  check_pair(a, "dilations", "conv2d", what);
  check_padding(a, "conv2d");
  const auto& s = a.ints("strides");
  const auto& d = a.ints("dilations");
  const std::string& pad = a.str("padding");
  const int64_t oh = window_out(x.shape[1], w.shape[0], s[0], d[0], pad);
  const int64_t ow = window_out(x.shape[2], w.shape[1], s[1], d[1], pad);
  KILN_CHECK(pad == "SAME" || (oh > 0 && ow > 0),
             "conv2d: the (dilated) filter is larger than the VALID-padded input: {}", what);
  return {TensorType{x.dtype, Shape{x.shape[0], oh, ow, w.shape[3]}}};
}

// conv2d_bias_act(x, filter, bias) {strides, dilations, padding, act}: the JIT's fusion of
// conv2d, a bias add and an optional relu into one library call (oneDNN post-ops). f32; the
// bias holds one value per output channel, [C] or [1, ..., 1, C] (rank <= 4).
std::vector<TensorType> infer_conv2d_bias_act(const OpDef& op, std::span<const TensorType> in,
                                              const Attrs& attrs) {
  const TensorType& bias = in[2];
  KILN_CHECK(in[0].dtype == DType::f32 && in[1].dtype == DType::f32 && bias.dtype == DType::f32,
             "conv2d_bias_act: needs f32 operands: x {}, filter {}, bias {}", tstr(in[0]),
             tstr(in[1]), tstr(bias));
  const std::string& act = attrs.str("act");
  KILN_CHECK(act == "none" || act == "relu", "conv2d_bias_act: unknown activation '{}'", act);
  std::vector<TensorType> out = infer_conv2d(op, in.subspan(0, 2), attrs);
  const int64_t c = out[0].shape[3];
  const int64_t r = bias.shape.rank();
  bool ok = r >= 1 && r <= 4;
  for (int64_t i = 0; ok && i + 1 < r; ++i)
    ok = bias.shape[static_cast<size_t>(i)] == 1;
  const int64_t bc = ok ? bias.shape[static_cast<size_t>(r - 1)] : 0;
  KILN_CHECK(ok && (bc == c || bc < 0 || c < 0),
             "conv2d_bias_act: bias {} is not one value per channel of the output {}", tstr(bias),
             tstr(out[0]));
  return out;
}

std::vector<TensorType> infer_pool(const OpDef& def, std::span<const TensorType> in,
                                   const Attrs& a) {
  const char* Op = def.name().c_str();
  const TensorType& x = in[0];
  const std::string what = fmt::format("x {}", tstr(x));
  KILN_CHECK(x.shape.rank() == 4, "{}: x must be NHWC (rank 4): {}", Op, what);
  KILN_CHECK(x.dtype != DType::boolean, "{}: bool input is not supported: {}", Op, what);
  check_pair(a, "window", Op, what);
  check_pair(a, "strides", Op, what);
  check_padding(a, Op);
  const auto& k = a.ints("window");
  const auto& s = a.ints("strides");
  const std::string& pad = a.str("padding");
  const int64_t oh = window_out(x.shape[1], k[0], s[0], 1, pad);
  const int64_t ow = window_out(x.shape[2], k[1], s[1], 1, pad);
  KILN_CHECK(pad == "SAME" || (oh > 0 && ow > 0),
             "{}: window [{},{}] is larger than the VALID-padded input: {}", Op, k[0], k[1], what);
  return {TensorType{x.dtype, Shape{x.shape[0], oh, ow, x.shape[3]}}};
}

constexpr char kMaxPool[] = "max_pool2d";
constexpr char kAvgPool[] = "avg_pool2d";

}  // namespace

KILN_STATIC_INIT {
  registry()
      .mutable_op("matmul")
      .set_num_inputs(2)
      .set_flags(kContraction)
      .set_infer(infer_matmul)
      .set_doc("Batched matrix product with NumPy semantics (1-D operands, broadcast batch dims).");
  registry()
      .mutable_op("matmul_bias_act")
      .set_num_inputs(3)
      .set_flags(kContraction | kNotDifferentiable)
      .set_infer(infer_matmul_bias_act)
      .set_doc(
          "act(a x b + bias) in one oneDNN call (attr act: none or relu); made by the JIT "
          "from matmul, add and relu, after differentiation.");
  registry()
      .mutable_op("conv2d")
      .set_num_inputs(2)
      .set_flags(kContraction)
      .set_infer(infer_conv2d)
      .set_doc("2-D convolution, x NHWC, filter HWIO; attrs strides, dilations, padding.");
  registry()
      .mutable_op("conv2d_bias_act")
      .set_num_inputs(3)
      .set_flags(kContraction | kNotDifferentiable)
      .set_infer(infer_conv2d_bias_act)
      .set_doc(
          "act(conv2d(x, filter) + bias) in one oneDNN call, bias one value per output channel "
          "(attrs of conv2d plus act: none or relu); made by the JIT from conv2d, add and relu, "
          "after differentiation.");
  registry()
      .mutable_op(kMaxPool)
      .set_num_inputs(1)
      .set_infer(infer_pool)
      .set_doc("Max pooling over NHWC; attrs window, strides, padding.");
  registry()
      .mutable_op(kAvgPool)
      .set_num_inputs(1)
      .set_infer(infer_pool)
      .set_doc("Average pooling over NHWC excluding padding; attrs window, strides, padding.");
};

Tensor matmul(const Tensor& a, const Tensor& b) {
  static const OpDef& op = registry().op("matmul");
  if (a.dtype() != b.dtype()) {
    const DType t = promote(a.dtype(), b.dtype());
    return dispatch1(op, {cast(a, t), cast(b, t)});
  }
  return dispatch1(op, {a, b});
}

Tensor conv2d(const Tensor& x, const Tensor& filter, std::vector<int64_t> strides, Padding padding,
              std::vector<int64_t> dilations) {
  static const OpDef& op = registry().op("conv2d");
  check_public_pair(strides, "strides", "conv2d", &x);
  check_public_pair(dilations, "dilations", "conv2d", &x);
  Attrs attrs{{"strides", std::move(strides)},
              {"dilations", std::move(dilations)},
              {"padding", std::string(padding_str(padding))}};
  if (x.dtype() != filter.dtype()) {
    const DType t = promote(x.dtype(), filter.dtype());
    return dispatch1(op, {cast(x, t), cast(filter, t)}, attrs);
  }
  return dispatch1(op, {x, filter}, attrs);
}

namespace {
Tensor pool(const char* name, const Tensor& x, std::vector<int64_t> window,
            std::vector<int64_t> strides, Padding padding) {
  check_public_pair(window, "window", name, &x);
  check_public_pair(strides, "strides", name, &x);
  Attrs attrs{{"window", std::move(window)},
              {"strides", std::move(strides)},
              {"padding", std::string(padding_str(padding))}};
  return dispatch1(registry().op(name), {x}, attrs);
}
}  // namespace

Tensor max_pool2d(const Tensor& x, std::vector<int64_t> window, std::vector<int64_t> strides,
                  Padding padding) {
  return pool(kMaxPool, x, std::move(window), std::move(strides), padding);
}

Tensor avg_pool2d(const Tensor& x, std::vector<int64_t> window, std::vector<int64_t> strides,
                  Padding padding) {
  return pool(kAvgPool, x, std::move(window), std::move(strides), padding);
}

}  // namespace kiln
