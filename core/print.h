#pragma once

#include <string>

#include <fmt/format.h>

#include <kiln/core/tensor.h>

namespace kiln {

// NumPy-like text: "tensor([[1, 2],\n        [3, 4]], dtype=i32)". Beyond 1000 elements the
// middle of each dim is elided with "...", showing 3 items at each edge.
std::string to_string(const Tensor& t);

}  // namespace kiln

template <>
struct fmt::formatter<kiln::Tensor> : fmt::formatter<std::string> {
  auto format(const kiln::Tensor& t, format_context& ctx) const {
    return fmt::formatter<std::string>::format(kiln::to_string(t), ctx);
  }
};
template <>
struct fmt::formatter<kiln::Shape> : fmt::formatter<std::string> {
  auto format(const kiln::Shape& s, format_context& ctx) const {
    return fmt::formatter<std::string>::format(s.str(), ctx);
  }
};
template <>
struct fmt::formatter<kiln::DType> : fmt::formatter<std::string_view> {
  auto format(kiln::DType t, format_context& ctx) const {
    return fmt::formatter<std::string_view>::format(kiln::name(t), ctx);
  }
};
