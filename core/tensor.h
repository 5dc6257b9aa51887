#pragma once

#include <atomic>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <vector>

#include <kiln/core/allocator.h>
#include <kiln/core/dtype.h>
#include <kiln/core/error.h>
#include <kiln/core/shape.h>

namespace kiln {

// Whatever a tracer or another subsystem attaches to a tensor with no data (a symbolic
// tensor): the tracer derives its graph-value record from this.
class TensorExtension {
 public:
  virtual ~TensorExtension() = default;
};

struct TensorImpl {
  DType dtype = DType::f32;
  Shape shape;
  Strides strides;  // in elements
  int64_t offset = 0;
  std::shared_ptr<StorageImpl> storage;  // null for symbolic tensors
  std::shared_ptr<TensorExtension> ext;
  uint64_t id = next_id();

  static uint64_t next_id() {
    static std::atomic<uint64_t> counter{1};
    return counter.fetch_add(1, std::memory_order_relaxed);
  }
};

class Tensor;
class Scalar;
// The dtype and shape of a value: what shape inference consumes and produces.
struct TensorType {
  DType dtype = DType::f32;
  Shape shape;
  friend bool operator==(const TensorType&, const TensorType&) = default;
};

// A cheap, immutable handle to an n-d array. Copies share the same value; views (reshape,
// transpose, slice, broadcast) share storage and copy nothing.
class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // A new, uninitialized contiguous tensor.
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu());
  // A tensor with no data, for a tracer: `ext` carries its graph value.
  static Tensor symbolic(const Shape& shape, DType dtype, std::shared_ptr<TensorExtension> ext);
  // A view of `base`'s storage with other dims, strides (elements) and offset. Kernels only.
  static Tensor view_of(const Tensor& base, Shape shape, Strides strides, int64_t offset);

  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  int64_t dim(int64_t i) const;
  int64_t rank() const { return impl().shape.rank(); }
  int64_t numel() const { return impl().shape.numel(); }
  DType dtype() const { return impl().dtype; }
  Device device() const;
  TensorType type() const { return {dtype(), shape()}; }
  const Strides& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  bool is_contiguous() const;
  // Whether this handle is the only reference to its data: no other Tensor, view or storage
  // handle shares it, so a kernel may write its output over it (in-place). `handles` allows
  // that many copies of this very handle (a variable's value and its read). Kernels only.
  bool data_is_unshared(long handles = 1) const {
    return impl_ != nullptr && impl_.use_count() == handles && impl_->storage != nullptr &&
           impl_->storage.use_count() == 1;
  }
  bool is_symbolic() const { return impl_ && !impl_->storage; }
  uint64_t id() const { return impl().id; }
  TensorImpl* get() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  TensorExtension* extension() const { return impl().ext.get(); }

  // Host reads (raise kiln::Error on a symbolic tensor).
  template <class T>
  T item() const;
  template <class T>
  std::vector<T> to_vector() const;

  Tensor to(DType dtype) const;
  Tensor to(Device device) const;
  Tensor reshape(const Shape& shape) const;
  Tensor transpose() const;  // swaps the last two dims
  Tensor permute(std::vector<int64_t> perm) const;
  Tensor slice(int64_t axis, int64_t start, int64_t stop, int64_t step = 1) const;
  Tensor operator[](int64_t i) const;
  Tensor clone() const;
  // This tensor when already row-major and dense, otherwise a dense copy.
  Tensor contiguous() const;

  // Raw element access for kernels: the address of element 0 (offset applied).
  template <class T>
  const T* data() const {
    return reinterpret_cast<const T*>(raw_data());
  }
  template <class T>
  T* mutable_data() const {  // kernels only: writes into a tensor they just created
    return reinterpret_cast<T*>(const_cast<void*>(raw_data()));
  }
  const void* raw_data() const;

  // "f32[2,3]"
  std::string type_str() const;

 private:
  const TensorImpl& impl() const {
    KILN_CHECK(impl_ != nullptr, "tensor: use of an undefined Tensor");
    return *impl_;
  }
  void check_readable(const char* what) const;
  // Copies the elements, in row-major order and converted to `to`, into dst.
  void copy_out(void* dst, DType to) const;
  std::shared_ptr<TensorImpl> impl_;
};

// A C++ number used as an operand: weakly typed, it takes the dtype of the tensor it meets.
class Scalar {
 public:
  template <class T>
  requires std::is_arithmetic_v<T> Scalar(
      T v) {  // NOLINT(google-explicit-constructor): scalars convert implicitly
    if constexpr (std::is_same_v<T, bool>) {
      kind_ = Kind::boolean;
      i_ = v;
      d_ = v;
    } else if constexpr (std::is_floating_point_v<T>) {
      kind_ = Kind::floating;
      d_ = static_cast<double>(v);
      i_ = static_cast<int64_t>(v);
    } else {
      kind_ = Kind::integral;
      i_ = static_cast<int64_t>(v);
      d_ = static_cast<double>(v);
    }
  }
  double to_double() const { return d_; }
  int64_t to_int() const { return i_; }
  bool is_floating() const { return kind_ == Kind::floating; }
  bool is_bool() const { return kind_ == Kind::boolean; }
  // The dtype the scalar takes next to a tensor of dtype t (JAX-style weak typing).
  DType weak_dtype_with(DType t) const;

 private:
  enum class Kind { boolean, integral, floating } kind_;
  double d_ = 0;
  int64_t i_ = 0;
};

// A 0-d tensor holding `s` converted to `dtype`.
Tensor scalar_tensor(Scalar s, DType dtype);

template <class T>
T Tensor::item() const {
  check_readable("item");
  KILN_CHECK(numel() == 1, "item: the tensor has {} elements, not 1: {}", numel(), type_str());
  T out{};
  copy_out(&out, dtype_v<T>);
  return out;
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  check_readable("to_vector");
  std::vector<T> out(static_cast<size_t>(numel()));
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<uint8_t> tmp(out.size());
    copy_out(tmp.data(), DType::boolean);
    for (size_t i = 0; i < out.size(); ++i)
      out[i] = tmp[i] != 0;
  } else {
    copy_out(out.data(), dtype_v<T>);
  }
  return out;
}

// ---- creation from host data -------------------------------------------------------------
Tensor from_buffer(const void* data, const Shape& shape, DType dtype);

template <class T>
Tensor from_vector(const std::vector<T>& data, const Shape& shape) {
  KILN_CHECK(static_cast<int64_t>(data.size()) == shape.numel(),
             "from_vector: {} values do not fill shape {}", data.size(), shape.str());
  if constexpr (std::is_same_v<T, bool>) {
    std::vector<uint8_t> tmp(data.begin(), data.end());
    return from_buffer(tmp.data(), shape, DType::boolean);
  } else {
    return from_buffer(data.data(), shape, dtype_v<T>);
  }
}

namespace detail {
template <class T>
struct NestedInit {
  using type = std::initializer_list<T>;
};
template <class T>
void flatten_init(const T& v, std::vector<T>& out, std::vector<int64_t>&, size_t) {
  out.push_back(v);
}
template <class T, class U>
void flatten_init(std::initializer_list<U> list, std::vector<T>& out, std::vector<int64_t>& dims,
                  size_t depth) {
  if (dims.size() <= depth) dims.push_back(static_cast<int64_t>(list.size()));
  KILN_CHECK(dims[depth] == static_cast<int64_t>(list.size()),
             "tensor: ragged nested list: dim {} has {} and {} entries", depth, dims[depth],
             list.size());
  for (const auto& x : list)
    flatten_init<T>(x, out, dims, depth + 1);
}
template <class T>
using host_t = std::conditional_t<std::is_same_v<T, long long>, int64_t, T>;
}  // namespace detail

// kiln::tensor(3.f), kiln::tensor({1, 2}), kiln::tensor({{1.f, 2.f}, {3.f, 4.f}}), ...
template <class T>
requires std::is_arithmetic_v<T> Tensor tensor(T v) {
  return from_vector<detail::host_t<T>>({static_cast<detail::host_t<T>>(v)}, Shape{});
}
template <class T>
Tensor tensor(std::initializer_list<T> l) {
  std::vector<T> flat;
  std::vector<int64_t> dims;
  detail::flatten_init<T>(l, flat, dims, 0);
  if (dims.empty()) dims.push_back(0);
  return from_vector(flat, Shape(dims));
}
template <class T>
Tensor tensor(std::initializer_list<std::initializer_list<T>> l) {
  std::vector<T> flat;
  std::vector<int64_t> dims;
  detail::flatten_init<T>(l, flat, dims, 0);
  return from_vector(flat, Shape(dims));
}
template <class T>
Tensor tensor(std::initializer_list<std::initializer_list<std::initializer_list<T>>> l) {
  std::vector<T> flat;
  std::vector<int64_t> dims;
  detail::flatten_init<T>(l, flat, dims, 0);
  return from_vector(flat, Shape(dims));
}
template <class T>
Tensor tensor(
    std::initializer_list<std::initializer_list<std::initializer_list<std::initializer_list<T>>>>
        l) {
  std::vector<T> flat;
  std::vector<int64_t> dims;
  detail::flatten_init<T>(l, flat, dims, 0);
  return from_vector(flat, Shape(dims));
}

std::ostream& operator<<(std::ostream& os, const Tensor& t);
std::ostream& operator<<(std::ostream& os, DType t);
std::ostream& operator<<(std::ostream& os, const Shape& s);

}  // namespace kiln
