#pragma once

// Internal to Kiln: shape inference and attribute checks shared by the windowed ops (conv2d and
// pooling, core/ops_nn.cpp) and their gradients (core/ops_nn_grad.cpp), and the padding rule
// the backends' kernels share. Not part of the public API.

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <kiln/core/attrs.h>
#include <kiln/core/error.h>
#include <kiln/core/ops.h>
#include <kiln/core/tensor.h>

namespace kiln::detail {

// "f32[1,4,4,1]": a type as error messages print it.
inline std::string tstr(const TensorType& t) {
  return fmt::format("{}{}", name(t.dtype), t.shape.str());
}

// TensorFlow's output size: SAME keeps ceil(in/stride), VALID only full windows. An unknown
// input size (-1, symbolic shapes) gives an unknown output size.
inline int64_t window_out(int64_t in, int64_t k, int64_t stride, int64_t dil,
                          const std::string& pad) {
  if (in < 0) return -1;
  const int64_t eff = (k - 1) * dil + 1;
  if (pad == "SAME") return (in + stride - 1) / stride;
  return in >= eff ? (in - eff) / stride + 1 : 0;
}

// TensorFlow's SAME padding along one dim, both sides together: max((out-1)*s + eff - in, 0);
// the smaller half goes before. The CPU and CUDA kernels' geometry both use it.
inline int64_t same_pad_total(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t dil) {
  return std::max<int64_t>((out - 1) * stride + (k - 1) * dil + 1 - in, 0);
}

// Checks that attribute `attr` of op `op` is present and holds two positive integers; `what`
// (the operands) ends the message.
inline void check_pair(const Attrs& a, const char* attr, const char* op, const std::string& what) {
  KILN_CHECK(a.has(attr), "{}: missing attribute '{}' ({})", op, attr, what);
  const auto& v = a.ints(attr);
  KILN_CHECK(v.size() == 2 && v[0] > 0 && v[1] > 0,
             "{}: {} must be two positive integers, got [{}] ({})", op, attr, fmt::join(v, ","),
             what);
}

// Checks that attribute "padding" is present and is "SAME" or "VALID".
inline void check_padding(const Attrs& a, const char* op) {
  KILN_CHECK(a.has("padding"), "{}: missing attribute 'padding'", op);
  const std::string& p = a.str("padding");
  KILN_CHECK(p == "SAME" || p == "VALID", "{}: padding must be SAME or VALID, got '{}'", op, p);
}

// The "padding" attribute's value for p.
inline const char* padding_str(Padding p) {
  return p == Padding::same ? "SAME" : "VALID";
}

// Checks a public entry point's strides/dilations/window argument: two positive integers. When
// x is given, its type ends the message.
inline void check_public_pair(const std::vector<int64_t>& v, const char* attr, const char* op,
                              const Tensor* x = nullptr) {
  if (v.size() == 2 && v[0] > 0 && v[1] > 0) return;
  if (x)
    KILN_FAIL("{}: {} must be two positive integers, got [{}] (x {})", op, attr, fmt::join(v, ","),
              x->type_str());
  KILN_FAIL("{}: {} must be two positive integers, got [{}]", op, attr, fmt::join(v, ","));
}

}  // namespace kiln::detail
