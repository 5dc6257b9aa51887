#include <kiln/core/shape.h>

#include <algorithm>

#include <fmt/format.h>

#include <kiln/core/error.h>

namespace kiln {

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int64_t d : dims_)
    n *= d;
  return n;
}

// Unknown dims (-1) print as "?".
std::string Shape::str() const {
  std::string s = "[";
  for (size_t i = 0; i < dims_.size(); ++i) {
    if (i) s += ',';
    s += dims_[i] < 0 ? std::string("?") : std::to_string(dims_[i]);
  }
  return s + "]";
}

Strides contiguous_strides(const Shape& shape) {
  Strides s(shape.size());
  int64_t acc = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    s[i] = acc;
    acc *= std::max<int64_t>(shape[i], 1);
  }
  return s;
}

AxisSplit split_at(const Shape& s, int64_t axis) {
  AxisSplit r;
  for (int64_t d = 0; d < s.rank(); ++d) {
    if (d < axis)
      r.outer *= s[d];
    else if (d == axis)
      r.n = s[d];
    else
      r.inner *= s[d];
  }
  return r;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t r = std::max(a.size(), b.size());
  std::vector<int64_t> out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
    // An unknown dim (-1) matches anything; the result is the known side unless it is 1.
    KILN_CHECK(da == db || da == 1 || db == 1 || da < 0 || db < 0,
               "{}: shapes {} and {} cannot be broadcast together (dim {}: {} vs {})", op, a.str(),
               b.str(), i, da, db);
    if (da < 0 || db < 0)
      out[i] = (da < 0 && db < 0) ? -1 : (da < 0 ? (db == 1 ? -1 : db) : (da == 1 ? -1 : da));
    else
      out[i] = da == 1 ? db : da;
  }
  return Shape(std::move(out));
}

int64_t normalize_axis(int64_t axis, int64_t rank, const char* op) {
  KILN_CHECK(axis >= -rank && axis < rank, "{}: axis {} is out of range for a tensor of rank {}",
             op, axis, rank);
  return axis < 0 ? axis + rank : axis;
}

std::vector<int64_t> normalize_axes(std::span<const int64_t> axes, int64_t rank, const char* op) {
  std::vector<int64_t> out;
  if (axes.empty()) {
    for (int64_t i = 0; i < rank; ++i)
      out.push_back(i);
    return out;
  }
  for (int64_t a : axes)
    out.push_back(normalize_axis(a, rank, op));
  std::sort(out.begin(), out.end());
  KILN_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), "{}: repeated axis in [{}]",
             op, fmt::join(axes, ","));
  return out;
}

}  // namespace kiln
