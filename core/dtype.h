// core/: the foundation every other folder builds on -- dtypes, shapes, devices, storage,
// the Tensor handle, the op registry and eager dispatch.
#pragma once

#include <cstdint>
#include <string_view>
#include <type_traits>

namespace kiln {

// Element types, ordered by promotion rank: bool < u8 < i32 < i64 < f32 < f64.
enum class DType : uint8_t { boolean = 0, u8, i32, i64, f32, f64 };
inline constexpr int kNumDTypes = 6;

inline constexpr DType boolean = DType::boolean;
inline constexpr DType u8 = DType::u8;
inline constexpr DType i32 = DType::i32;
inline constexpr DType i64 = DType::i64;
inline constexpr DType f32 = DType::f32;
inline constexpr DType f64 = DType::f64;

constexpr size_t size_of(DType t) {
  switch (t) {
    case DType::boolean:
    case DType::u8:
      return 1;
    case DType::i32:
    case DType::f32:
      return 4;
    case DType::i64:
    case DType::f64:
      return 8;
  }
  return 0;
}
constexpr bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64;
}
constexpr bool is_integral(DType t) {
  return t == DType::u8 || t == DType::i32 || t == DType::i64;
}
// Tensor-tensor promotion: the higher of the two ranks.
constexpr DType promote(DType a, DType b) {
  return a > b ? a : b;
}
std::string_view name(DType t);

template <class T>
struct dtype_of;
template <>
struct dtype_of<bool> {
  static constexpr DType value = DType::boolean;
};
template <>
struct dtype_of<uint8_t> {
  static constexpr DType value = DType::u8;
};
template <>
struct dtype_of<int32_t> {
  static constexpr DType value = DType::i32;
};
template <>
struct dtype_of<int64_t> {
  static constexpr DType value = DType::i64;
};
template <>
struct dtype_of<float> {
  static constexpr DType value = DType::f32;
};
template <>
struct dtype_of<double> {
  static constexpr DType value = DType::f64;
};
template <class T>
inline constexpr DType dtype_v = dtype_of<std::remove_cvref_t<T>>::value;

template <class T>
struct TypeTag {
  using type = T;
};

// Calls fn(TypeTag<T>{}) with T the C++ type of `t`. The switch lives here once.
template <class Fn>
decltype(auto) visit_dtype(DType t, Fn&& fn) {
  switch (t) {
    case DType::boolean:
      return fn(TypeTag<bool>{});
    case DType::u8:
      return fn(TypeTag<uint8_t>{});
    case DType::i32:
      return fn(TypeTag<int32_t>{});
    case DType::i64:
      return fn(TypeTag<int64_t>{});
    case DType::f32:
      return fn(TypeTag<float>{});
    case DType::f64:
      break;
  }
  return fn(TypeTag<double>{});
}

}  // namespace kiln
