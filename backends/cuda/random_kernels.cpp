// The CUDA kernels of the sized random draws rng_uniform, rng_randint and rng_bernoulli
// (random.cu). A sized draw has no input to say where it runs: the _like draw that calls it
// (core/random.cpp) and the JIT pass the device as the attribute "device". rng_normal has no
// CUDA kernel: normal draws shaped like a device tensor are made on the host and copied.

#include <cmath>

#include <kiln/core/registry.h>
#include <kiln/core/tensor.h>

#include "launch.h"
#include "runtime.h"

namespace kiln::cuda {
namespace {

Device device_of(const Attrs& a, const char* op) {
  KILN_CHECK(a.has("device"), "{}: a draw on CUDA needs its device (the attribute 'device')", op);
  return Device::cuda(static_cast<int>(a.i("device")));
}

launch::Philox counters(const Attrs& a) {
  return {static_cast<uint64_t>(a.i("seed")), static_cast<uint64_t>(a.i("offset"))};
}

// The draw's output on its device, filled there by launch(data, numel, stream).
template <class Launch>
std::vector<Tensor> draw(const Attrs& a, const char* op, const TensorType& type, Launch&& launch) {
  const Device dev = device_of(a, op);
  DeviceGuard g(dev.index);
  Tensor t = Tensor::empty(type.shape, type.dtype, dev);
  check(launch(t.mutable_data<char>(), t.numel(), stream(dev.index)), op);
  return {t};
}

std::vector<Tensor> uniform_kernel(std::span<const Tensor>, const Attrs& a,
                                   std::span<const TensorType> out) {
  const double lo = a.f("lo"), hi = a.f("hi");
  const int dtype = static_cast<int>(out[0].dtype);
  // The largest value below hi in the output's precision, as the CPU kernel's.
  const double top =
      out[0].dtype == DType::f32
          ? static_cast<double>(std::nextafter(static_cast<float>(hi), static_cast<float>(lo)))
          : std::nextafter(hi, lo);
  return draw(a, "rng_uniform", out[0], [&](void* data, int64_t n, cudaStream_t s) {
    return launch::rng_uniform(dtype, data, n, counters(a), lo, hi, top, s);
  });
}

std::vector<Tensor> randint_kernel(std::span<const Tensor>, const Attrs& a,
                                   std::span<const TensorType> out) {
  const int64_t lo = a.i("lo");
  const uint64_t range = static_cast<uint64_t>(a.i("hi")) - static_cast<uint64_t>(lo);
  const int dtype = static_cast<int>(out[0].dtype);
  return draw(a, "rng_randint", out[0], [&](void* data, int64_t n, cudaStream_t s) {
    return launch::rng_randint(dtype, data, n, counters(a), lo, range, s);
  });
}

std::vector<Tensor> bernoulli_kernel(std::span<const Tensor>, const Attrs& a,
                                     std::span<const TensorType> out) {
  const auto threshold = static_cast<uint64_t>(std::ldexp(a.f("p"), 32));
  return draw(a, "rng_bernoulli", out[0], [&](void* data, int64_t n, cudaStream_t s) {
    return launch::rng_bernoulli(data, n, counters(a), threshold, s);
  });
}

KILN_STATIC_INIT {
  registry().mutable_op("rng_uniform").set_kernel(DeviceType::cuda, uniform_kernel);
  registry().mutable_op("rng_randint").set_kernel(DeviceType::cuda, randint_kernel);
  registry().mutable_op("rng_bernoulli").set_kernel(DeviceType::cuda, bernoulli_kernel);
};

}  // namespace
}  // namespace kiln::cuda
