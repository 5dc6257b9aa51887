// The CUDA kernels of argmax/argmin, concatenate, pad, gather and scatter_add: shapes, strides
// and dtypes worked out here, the launches in index.cu and movement.cu (launch_index.h).
// Semantics, attributes and error messages are the CPU kernels' (backends/cpu/reduce.cpp and
// backends/cpu/movement.cpp); the messages add the device.
//
// Indices out of range are the user's error, which the CPU raises before it copies anything.
// Here a check kernel finds the first bad index on the device and the host waits for its answer
// (launch_index.h, "data checks"): gather and scatter_add cost one host synchronization per
// call, and raise kiln::Error instead of reading or writing out of bounds. Their kernels skip
// out-of-range indices as well, so no index can make them touch memory outside the tensors.

#include <cstring>

#include <kiln/core/dispatch.h>
#include <kiln/core/registry.h>
#include <kiln/core/tensor.h>

#include "launch_index.h"
#include "runtime.h"

namespace kiln::cuda {
namespace {

Tensor alloc(const TensorType& t, Device d) {
  return Tensor::empty(t.shape, t.dtype, d);
}

// `t` made dense and row-major on its device, without recording (kernels never record).
Tensor dense(const Tensor& t) {
  if (t.is_contiguous()) return t;
  SuspendHooks quiet;
  return t.contiguous();
}

int code(DType d) {
  return static_cast<int>(d);
}

int elem_size(DType d) {
  return static_cast<int>(size_of(d));
}

// The data pointer of element 0; null for an empty tensor, which no kernel reads.
const void* ptr(const Tensor& t) {
  return t.numel() == 0 ? nullptr : t.raw_data();
}

// The index at flat position `pos` of dense device indices (for an error message).
int64_t index_at(const Tensor& idx, unsigned long long pos, Device dev) {
  int64_t v64 = 0;
  int32_t v32 = 0;
  const bool wide = idx.dtype() == DType::i64;
  void* dst = wide ? static_cast<void*>(&v64) : static_cast<void*>(&v32);
  const size_t es = size_of(idx.dtype());
  const char* src = static_cast<const char*>(idx.raw_data()) + pos * es;
  check(cudaMemcpyAsync(dst, src, es, cudaMemcpyDeviceToHost, stream(dev.index)),
        "cudaMemcpyAsync (reading a bad index)");
  check(cudaStreamSynchronize(stream(dev.index)), "cudaStreamSynchronize");
  return wide ? v64 : v32;
}

// Raises the CPU's error (its checked_indices) when an index of `idx` (indices made dense) is
// outside [0, n). Waits for the device: one host synchronization (none when idx is empty).
void check_indices(const char* op, const Tensor& x, const Tensor& indices, const Tensor& idx,
                   int64_t n, Device dev) {
  Tensor word = Tensor::empty(Shape{1}, DType::i64, dev);
  unsigned long long first = launch::kNoError;
  check(launch::first_bad_index(code(idx.dtype()), ptr(idx), idx.numel(), n,
                                word.mutable_data<unsigned long long>(), &first, stream(dev.index)),
        op);
  if (first == launch::kNoError) return;
  KILN_FAIL(
      "{}: index {} is out of range [0, {}) for {} (indices {}) on {}; the first bad index is at "
      "flat position {} of the indices",
      op, index_at(idx, first, dev), n, x.type_str(), indices.type_str(), dev.str(), first);
}

// ---- argmax / argmin -----------------------------------------------------------------------

template <bool kMax>
std::vector<Tensor> arg_kernel(std::span<const Tensor> in, const Attrs& a,
                               std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard g(dev.index);
  Tensor y = alloc(out[0], dev);
  if (y.numel() == 0) return {y};
  const Tensor x = dense(in[0]);
  const AxisSplit s = split_at(x.shape(), a.i("axis"));
  check(launch::arg_reduce(kMax, code(x.dtype()), y.mutable_data<int64_t>(), ptr(x), s.outer, s.n,
                           s.inner, stream(dev.index)),
        kMax ? "argmax" : "argmin");
  return {y};
}

// ---- concatenate / pad ---------------------------------------------------------------------

// Each input, made dense, is a block of columns of the output seen as [outer, axis * inner].
std::vector<Tensor> concat_kernel(std::span<const Tensor> in, const Attrs& a,
                                  std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard g(dev.index);
  Tensor y = alloc(out[0], dev);
  if (y.numel() == 0) return {y};
  const AxisSplit s = split_at(y.shape(), a.i("axis"));
  int64_t at = 0;
  for (const Tensor& t : in) {
    const Tensor x = dense(t);
    const int64_t len = x.shape()[a.i("axis")];
    check(launch::concat_block(elem_size(y.dtype()), y.mutable_data<char>(), ptr(x), s.outer,
                               len * s.inner, s.n * s.inner, at * s.inner, stream(dev.index)),
          "concatenate");
    at += len;
  }
  return {y};
}

// The input is read through its strides (views need no copy); rank <= kMaxRank.
std::vector<Tensor> pad_kernel(std::span<const Tensor> in, const Attrs& a,
                               std::span<const TensorType> out) {
  const Tensor& x = in[0];
  const Device dev = x.device();
  DeviceGuard g(dev.index);
  Tensor y = alloc(out[0], dev);
  if (y.numel() == 0) return {y};
  KILN_CHECK(x.rank() <= launch::kMaxRank, "pad: cuda kernels take rank <= {}, got {} on {}",
             launch::kMaxRank, x.type_str(), dev.str());
  const auto& pads = a.ints("pads");
  launch::PadPlan p;
  p.rank = static_cast<int>(x.rank());
  for (int64_t d = 0; d < x.rank(); ++d) {
    p.out_shape[d] = y.shape()[d];
    p.before[d] = pads[static_cast<size_t>(2 * d)];
    p.in_shape[d] = x.shape()[d];
    p.in_strides[d] = x.strides()[static_cast<size_t>(d)];
  }
  // The value converted as the CPU's fill converts it (static_cast<T>), on the host.
  uint64_t bits = 0;
  visit_dtype(x.dtype(), [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T v = static_cast<T>(a.f("value"));
    std::memcpy(&bits, &v, sizeof v);
  });
  check(launch::pad(elem_size(x.dtype()), y.mutable_data<char>(), ptr(x), p, bits, y.numel(),
                    stream(dev.index)),
        "pad");
  return {y};
}

// ---- gather / scatter_add ------------------------------------------------------------------

std::vector<Tensor> gather_kernel(std::span<const Tensor> in, const Attrs& a,
                                  std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard g(dev.index);
  Tensor y = alloc(out[0], dev);
  const Tensor x = dense(in[0]), idx = dense(in[1]);
  const AxisSplit s = split_at(x.shape(), a.i("axis"));
  check_indices("gather", in[0], in[1], idx, s.n, dev);  // even when y is empty, as the CPU
  check(launch::gather(elem_size(x.dtype()), code(idx.dtype()), y.mutable_data<char>(), ptr(x),
                       ptr(idx), s.outer, s.n, idx.numel(), s.inner, stream(dev.index)),
        "gather");
  return {y};
}

std::vector<Tensor> scatter_add_kernel(std::span<const Tensor> in, const Attrs& a,
                                       std::span<const TensorType> out) {
  const Device dev = in[0].device();
  DeviceGuard g(dev.index);
  Tensor y = alloc(out[0], dev);
  const Tensor x = dense(in[0]), idx = dense(in[1]), upd = dense(in[2]);
  const AxisSplit s = split_at(x.shape(), a.i("axis"));
  check_indices("scatter_add", in[0], in[1], idx, s.n, dev);
  if (y.numel() == 0) return {y};
  check(cudaMemcpyAsync(y.mutable_data<char>(), x.raw_data(),
                        static_cast<size_t>(y.numel()) * size_of(y.dtype()),
                        cudaMemcpyDeviceToDevice, stream(dev.index)),
        "cudaMemcpyAsync (scatter_add's copy of x)");
  check(launch::scatter_add(code(y.dtype()), code(idx.dtype()), y.mutable_data<char>(), ptr(upd),
                            ptr(idx), s.outer, s.n, idx.numel(), s.inner, stream(dev.index)),
        "scatter_add");
  return {y};
}

void reg(const char* op, KernelFn fn) {
  registry().mutable_op(op).set_kernel(DeviceType::cuda, fn);
}

KILN_STATIC_INIT {
  reg("argmax", arg_kernel<true>);
  reg("argmin", arg_kernel<false>);
  reg("concatenate", concat_kernel);
  reg("pad", pad_kernel);
  reg("gather", gather_kernel);
  reg("scatter_add", scatter_add_kernel);
};

}  // namespace
}  // namespace kiln::cuda
