#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

namespace kiln {

// The dims of a tensor: a small vector of int64_t. A dim of -1 means "unknown" and appears
// only in TensorSpecs and symbolic shapes, never in a concrete tensor.
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  explicit Shape(std::vector<int64_t> dims) : dims_(std::move(dims)) {}
  explicit Shape(std::span<const int64_t> dims) : dims_(dims.begin(), dims.end()) {}

  size_t size() const { return dims_.size(); }
  int64_t rank() const { return static_cast<int64_t>(dims_.size()); }
  bool empty() const { return dims_.empty(); }
  int64_t operator[](size_t i) const { return dims_[i]; }
  int64_t& operator[](size_t i) { return dims_[i]; }
  auto begin() const { return dims_.begin(); }
  auto end() const { return dims_.end(); }
  const int64_t* data() const { return dims_.data(); }
  const std::vector<int64_t>& dims() const { return dims_; }
  std::vector<int64_t>& dims() { return dims_; }
  void push_back(int64_t d) { dims_.push_back(d); }
  int64_t back() const { return dims_.back(); }

  int64_t numel() const;
  // "[2,3]"
  std::string str() const;
  friend bool operator==(const Shape&, const Shape&) = default;

 private:
  std::vector<int64_t> dims_;
};

using Strides = std::vector<int64_t>;

// Row-major strides, in elements.
Strides contiguous_strides(const Shape& shape);
// NumPy broadcasting of two shapes; throws kiln::Error naming `op` when they do not match.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Maps a possibly negative axis into [0, rank); throws naming `op` when out of range.
int64_t normalize_axis(int64_t axis, int64_t rank, const char* op);
// Normalizes, sorts and deduplicates a list of axes; an empty list means every axis.
std::vector<int64_t> normalize_axes(std::span<const int64_t> axes, int64_t rank, const char* op);

// A shape seen as [outer, n, inner] around `axis` (in [0, rank)): the product of the dims
// before it, its own, the product of the dims after it. Gathers, scatters and concatenation
// index their operands this way.
struct AxisSplit {
  int64_t outer = 1, n = 1, inner = 1;
};
AxisSplit split_at(const Shape& s, int64_t axis);

}  // namespace kiln
