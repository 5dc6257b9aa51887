#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <kiln/core/dtype.h>
#include <kiln/core/error.h>

namespace kiln {

// The value of one op attribute. Shapes, axes and permutations are int lists.
using AttrValue = std::variant<int64_t, double, bool, std::vector<int64_t>, DType, std::string>;

// The attributes of one op call: a short list of named values in insertion order. Lookups are
// linear; ops have at most a handful of attributes.
class Attrs {
 public:
  Attrs() = default;
  Attrs(std::initializer_list<std::pair<std::string, AttrValue>> items) : items_(items) {}

  Attrs& set(std::string name, AttrValue v) {
    for (auto& [k, old] : items_)
      if (k == name) {
        old = std::move(v);
        return *this;
      }
    items_.emplace_back(std::move(name), std::move(v));
    return *this;
  }
  bool has(std::string_view name) const { return find(name) != nullptr; }
  const AttrValue* find(std::string_view name) const {
    for (const auto& [k, v] : items_)
      if (k == name) return &v;
    return nullptr;
  }
  template <class T>
  const T& get(std::string_view name) const {
    const AttrValue* v = find(name);
    KILN_ASSERT(v && std::holds_alternative<T>(*v), "missing or mistyped attribute '{}'", name);
    return std::get<T>(*v);
  }
  int64_t i(std::string_view name) const { return get<int64_t>(name); }
  double f(std::string_view name) const { return get<double>(name); }
  bool b(std::string_view name) const { return get<bool>(name); }
  const std::vector<int64_t>& ints(std::string_view name) const {
    return get<std::vector<int64_t>>(name);
  }
  DType dtype(std::string_view name) const { return get<DType>(name); }
  const std::string& str(std::string_view name) const { return get<std::string>(name); }

  const std::vector<std::pair<std::string, AttrValue>>& items() const { return items_; }
  bool empty() const { return items_.empty(); }
  friend bool operator==(const Attrs&, const Attrs&) = default;

 private:
  std::vector<std::pair<std::string, AttrValue>> items_;
};

}  // namespace kiln
