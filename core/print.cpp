// NumPy-like text for tensors: to_string(t) and, through it, operator<< and fmt.

#include <kiln/core/print.h>

#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include <kiln/core/dispatch.h>

namespace kiln {
namespace {

constexpr int64_t kSummarizeThreshold = 1000;
constexpr int64_t kEdgeItems = 3;
constexpr int kPrecision = 8;

// The indices shown along a dim of size n: all, or the first and last kEdgeItems with -1
// standing for "...".
std::vector<int64_t> shown_indices(int64_t n, bool summarize) {
  std::vector<int64_t> idx;
  if (summarize && n > 2 * kEdgeItems) {
    for (int64_t i = 0; i < kEdgeItems; ++i)
      idx.push_back(i);
    idx.push_back(-1);
    for (int64_t i = n - kEdgeItems; i < n; ++i)
      idx.push_back(i);
  } else {
    for (int64_t i = 0; i < n; ++i)
      idx.push_back(i);
  }
  return idx;
}

// Flat row-major offsets of the shown elements, in print order.
void collect(const Shape& shape, const Strides& strides, bool summarize, int64_t dim, int64_t base,
             std::vector<int64_t>& out) {
  if (dim == shape.rank()) {
    out.push_back(base);
    return;
  }
  for (int64_t i : shown_indices(shape[dim], summarize))
    if (i >= 0) collect(shape, strides, summarize, dim + 1, base + i * strides[dim], out);
}

template <class T>
bool round_trips(const std::string& s, T v) {
  if constexpr (std::is_same_v<T, float>)
    return std::strtof(s.c_str(), nullptr) == v;
  else
    return std::strtod(s.c_str(), nullptr) == v;
}

// The shortest of "{:.0f}" ... "{:.8f}" (or e) that reads back as v; at most 8 digits.
template <class T>
std::string shortest(T v, bool sci) {
  std::string s;
  for (int k = 0; k <= kPrecision; ++k) {
    s = sci ? fmt::format("{:.{}e}", v, k) : fmt::format("{:.{}f}", v, k);
    if (round_trips(s, v)) break;
  }
  if (sci) {
    const size_t e = s.find('e');
    if (s.find('.') == std::string::npos) s = s.substr(0, e) + "." + s.substr(e);
  } else {
    if (s.find('.') == std::string::npos)
      s += ".";
    else {
      while (s.back() == '0')
        s.pop_back();
    }
  }
  return s;
}

template <class T>
std::vector<std::string> format_floats(const std::vector<T>& vals) {
  double max_abs = 0, min_abs = INFINITY;
  for (T v : vals) {
    if (!std::isfinite(v) || v == 0) continue;
    const double a = std::abs(static_cast<double>(v));
    max_abs = std::max(max_abs, a);
    min_abs = std::min(min_abs, a);
  }
  const bool sci =
      max_abs >= 1e8 || (min_abs != INFINITY && (min_abs < 1e-4 || max_abs / min_abs > 1e3));
  std::vector<std::string> out;
  out.reserve(vals.size());
  size_t int_w = 0, frac_w = 0;
  for (T v : vals) {
    std::string s;
    if (std::isnan(v))
      s = "nan";
    else if (std::isinf(v))
      s = v > 0 ? "inf" : "-inf";
    else
      s = shortest(v, sci);
    out.push_back(s);
    if (!std::isfinite(v)) continue;
    const size_t dot = s.find('.');
    const size_t end = sci ? s.find('e') : s.size();
    int_w = std::max(int_w, dot);
    frac_w = std::max(frac_w, end - dot - 1);
  }
  // Align on the decimal point: NumPy pads the integer part on the left and the fraction on
  // the right (with zeros in scientific notation, spaces otherwise).
  size_t width = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    std::string& s = out[i];
    if (std::isfinite(vals[i])) {
      const size_t dot = s.find('.');
      const size_t end = sci ? s.find('e') : s.size();
      const size_t frac = end - dot - 1;
      if (frac < frac_w)
        s = s.substr(0, end) + std::string(frac_w - frac, sci ? '0' : ' ') + s.substr(end);
      if (dot < int_w) s = std::string(int_w - dot, ' ') + s;
    }
    width = std::max(width, s.size());
  }
  for (size_t i = 0; i < out.size(); ++i)
    if (out[i].size() < width) out[i] = std::string(width - out[i].size(), ' ') + out[i];
  return out;
}

// Right-aligns every string to the widest.
void pad_left(std::vector<std::string>& v) {
  size_t w = 0;
  for (const auto& s : v)
    w = std::max(w, s.size());
  for (auto& s : v)
    if (s.size() < w) s = std::string(w - s.size(), ' ') + s;
}

std::vector<std::string> format_values(const Tensor& dense, const std::vector<int64_t>& offs) {
  return visit_dtype(dense.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = dense.data<T>();
    std::vector<std::string> out;
    out.reserve(offs.size());
    if constexpr (std::is_floating_point_v<T>) {
      std::vector<T> vals;
      vals.reserve(offs.size());
      for (int64_t o : offs)
        vals.push_back(p[o]);
      return format_floats(vals);
    } else if constexpr (std::is_same_v<T, bool>) {
      for (int64_t o : offs)
        out.push_back(p[o] ? "true" : "false");
    } else {
      for (int64_t o : offs)
        out.push_back(fmt::format("{}", static_cast<int64_t>(p[o])));
    }
    pad_left(out);
    return out;
  });
}

// Writes the nested brackets of dims [dim, rank) consuming `vals` from `next`.
void emit(const Shape& shape, bool summarize, int64_t dim, size_t indent,
          const std::vector<std::string>& vals, size_t& next, std::string& out) {
  const int64_t rank = shape.rank();
  if (dim == rank) {
    out += vals[next++];
    return;
  }
  out += '[';
  const auto idx = shown_indices(shape[dim], summarize);
  const bool last_dim = dim == rank - 1;
  for (size_t k = 0; k < idx.size(); ++k) {
    if (k > 0) {
      if (last_dim) {
        out += ", ";
      } else {
        out += ',';
        out += std::string(static_cast<size_t>(rank - dim - 1), '\n');
        out += std::string(indent + static_cast<size_t>(dim) + 1, ' ');
      }
    }
    if (idx[k] < 0)
      out += "...";
    else
      emit(shape, summarize, dim + 1, indent, vals, next, out);
  }
  out += ']';
}

}  // namespace

std::string to_string(const Tensor& t) {
  if (!t.defined()) return "tensor(<undefined>)";
  const std::string dtype = std::string(name(t.dtype()));
  if (t.is_symbolic())
    return fmt::format("tensor(<symbolic>, shape={}, dtype={})", t.shape().str(), dtype);
  if (t.numel() == 0) {
    if (t.rank() == 1) return fmt::format("tensor([], dtype={})", dtype);
    return fmt::format("tensor([], shape={}, dtype={})", t.shape().str(), dtype);
  }
  Tensor dense;
  {
    SuspendHooks quiet;
    dense = t.to(Device::cpu()).contiguous();
  }
  const Shape& shape = dense.shape();
  const bool summarize = dense.numel() > kSummarizeThreshold;
  std::vector<int64_t> offs;
  collect(shape, contiguous_strides(shape), summarize, 0, 0, offs);
  const std::vector<std::string> vals = format_values(dense, offs);
  const std::string prefix = "tensor(";
  std::string out = prefix;
  size_t next = 0;
  emit(shape, summarize, 0, prefix.size(), vals, next, out);
  out += ", dtype=";
  out += dtype;
  out += ')';
  return out;
}

}  // namespace kiln
