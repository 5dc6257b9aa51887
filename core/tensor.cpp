#include <kiln/core/tensor.h>

#include <cstring>

#include <kiln/core/device_backend.h>
#include <kiln/core/dispatch.h>
#include <kiln/core/ops.h>
#include <kiln/core/print.h>

namespace kiln {

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape)
    KILN_CHECK(d >= 0, "empty: negative dim in shape [{}] ({})", fmt::join(shape.dims(), ","),
               name(dtype));
  auto impl = std::make_shared<TensorImpl>();
  impl->dtype = dtype;
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->storage =
      std::make_shared<StorageImpl>(static_cast<size_t>(shape.numel()) * size_of(dtype), device);
  return Tensor(std::move(impl));
}

Tensor Tensor::symbolic(const Shape& shape, DType dtype, std::shared_ptr<TensorExtension> ext) {
  auto impl = std::make_shared<TensorImpl>();
  impl->dtype = dtype;
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->ext = std::move(ext);
  return Tensor(std::move(impl));
}

Tensor Tensor::view_of(const Tensor& base, Shape shape, Strides strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->dtype = base.dtype();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->storage = base.impl().storage;
  impl->ext = base.impl().ext;
  return Tensor(std::move(impl));
}

int64_t Tensor::dim(int64_t i) const {
  return shape()[static_cast<size_t>(normalize_axis(i, rank(), "dim"))];
}

Device Tensor::device() const {
  const auto& s = impl().storage;
  return s ? s->device() : Device::cpu();
}

bool Tensor::is_contiguous() const {
  const TensorImpl& t = impl();
  int64_t expected = 1;
  for (size_t i = t.shape.size(); i-- > 0;) {
    if (t.shape[i] == 1) continue;
    if (t.strides[i] != expected) return false;
    expected *= t.shape[i];
  }
  return true;
}

const void* Tensor::raw_data() const {
  const TensorImpl& t = impl();
  KILN_ASSERT(t.storage, "raw_data of a symbolic tensor");
  return static_cast<const char*>(t.storage->data()) + t.offset * size_of(t.dtype);
}

std::string Tensor::type_str() const {
  return fmt::format("{}{}", name(dtype()), shape().str());
}

void Tensor::check_readable(const char* what) const {
  KILN_CHECK(defined(), "{}: the tensor is undefined", what);
  KILN_CHECK(!is_symbolic(),
             "{}: cannot read the value of symbolic tensor {} while tracing; return it from the "
             "function, or branch with kiln::cond / kiln::while_loop instead",
             what, type_str());
}

void Tensor::copy_out(void* dst, DType to) const {
  SuspendHooks quiet;
  // Values on a device are read through a copy to the host (which waits for the device).
  Tensor c = cast(device().is_cpu() ? *this : this->to(Device::cpu()), to).contiguous();
  if (c.numel() > 0) std::memcpy(dst, c.raw_data(), c.numel() * size_of(to));
}

Tensor Tensor::to(DType dtype) const {
  return cast(*this, dtype);
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  check_readable("to");
  // The backend of whichever side is not the host moves the bytes (device to device: the
  // source's).
  const Device via = this->device().is_cpu() ? device : this->device();
  const DeviceBackend& backend = checked_backend(via, "to");
  if (!device.is_cpu()) checked_backend(device, "to");
  const Tensor src = contiguous();
  Tensor out = Tensor::empty(shape(), dtype(), device);
  if (numel() > 0)
    backend.copy(out.mutable_data<char>(), device, src.raw_data(), this->device(),
                 static_cast<size_t>(numel()) * size_of(dtype()));
  return out;
}

Tensor Tensor::reshape(const Shape& shape) const {
  return kiln::reshape(*this, shape);
}

Tensor Tensor::transpose() const {
  KILN_CHECK(rank() >= 2, "transpose: needs rank >= 2, got {}", type_str());
  std::vector<int64_t> perm(rank());
  for (int64_t i = 0; i < rank(); ++i)
    perm[i] = i;
  std::swap(perm[rank() - 1], perm[rank() - 2]);
  return kiln::transpose(*this, std::move(perm));
}

Tensor Tensor::permute(std::vector<int64_t> perm) const {
  return kiln::transpose(*this, std::move(perm));
}

Tensor Tensor::slice(int64_t axis, int64_t start, int64_t stop, int64_t step) const {
  return kiln::slice(*this, axis, start, stop, step);
}

Tensor Tensor::operator[](int64_t i) const {
  KILN_CHECK(rank() >= 1, "index: cannot index a scalar {}", type_str());
  const int64_t n = shape()[0];
  KILN_CHECK(i >= -n && i < n, "index: index {} is out of range for dim 0 of {}", i, type_str());
  if (i < 0) i += n;
  return kiln::squeeze(kiln::slice(*this, 0, i, i + 1), 0);
}

Tensor Tensor::clone() const {
  static const OpDef& copy = registry().op("copy");
  return dispatch1(copy, {*this});
}

Tensor Tensor::contiguous() const {
  if (!is_symbolic() && is_contiguous()) return *this;
  return clone();
}

DType Scalar::weak_dtype_with(DType t) const {
  if (kind_ == Kind::floating && !kiln::is_floating(t)) return DType::f32;
  if (kind_ == Kind::integral && t == DType::boolean) return DType::i32;
  return t;
}

Tensor scalar_tensor(Scalar s, DType dtype) {
  Tensor t = Tensor::empty(Shape{}, dtype);
  visit_dtype(dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    *t.mutable_data<T>() =
        is_floating(dtype) ? static_cast<T>(s.to_double()) : static_cast<T>(s.to_int());
    if constexpr (std::is_same_v<T, bool>) *t.mutable_data<T>() = s.to_double() != 0;
  });
  return t;
}

Tensor from_buffer(const void* data, const Shape& shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype);
  if (shape.numel() > 0) std::memcpy(t.mutable_data<char>(), data, shape.numel() * size_of(dtype));
  return t;
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) {
  return os << to_string(t);
}
std::ostream& operator<<(std::ostream& os, DType t) {
  return os << name(t);
}
std::ostream& operator<<(std::ostream& os, const Shape& s) {
  return os << s.str();
}

}  // namespace kiln
