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

std::vector<Tensor> uniform_kernel(std::span<const Tensor>, const Attrs& a,
                                   std::span<const TensorType> out) {
  const Device dev = device_of(a, "rng_uniform");
  DeviceGuard g(dev.index);
  Tensor t = Tensor::empty(out[0].shape, out[0].dtype, dev);
  const double lo = a.f("lo"), hi = a.f("hi");
  // The largest value below hi in the output's precision, as the CPU kernel's.
  const double top =
      out[0].dtype == DType::f32
          ? static_cast<double>(std::nextafter(static_cast<float>(hi), static_cast<float>(lo)))
          : std::nextafter(hi, lo);
  check(launch::rng_uniform(static_cast<int>(out[0].dtype), t.mutable_data<char>(), t.numel(),
                            counters(a), lo, hi, top, stream(dev.index)),
        "rng_uniform");
  return {t};
}

std::vector<Tensor> randint_kernel(std::span<const Tensor>, const Attrs& a,
                                   std::span<const TensorType> out) {
  const Device dev = device_of(a, "rng_randint");
  DeviceGuard g(dev.index);
  Tensor t = Tensor::empty(out[0].shape, out[0].dtype, dev);
  const int64_t lo = a.i("lo");
  const uint64_t range = static_cast<uint64_t>(a.i("hi")) - static_cast<uint64_t>(lo);
  check(launch::rng_randint(static_cast<int>(out[0].dtype), t.mutable_data<char>(), t.numel(),
                            counters(a), lo, range, stream(dev.index)),
        "rng_randint");
  return {t};
}

std::vector<Tensor> bernoulli_kernel(std::span<const Tensor>, const Attrs& a,
                                     std::span<const TensorType> out) {
  const Device dev = device_of(a, "rng_bernoulli");
  DeviceGuard g(dev.index);
  Tensor t = Tensor::empty(out[0].shape, out[0].dtype, dev);
  const auto threshold = static_cast<uint64_t>(std::ldexp(a.f("p"), 32));
  check(launch::rng_bernoulli(t.mutable_data<char>(), t.numel(), counters(a), threshold,
                              stream(dev.index)),
        "rng_bernoulli");
  return {t};
}

KILN_STATIC_INIT {
  registry().mutable_op("rng_uniform").set_kernel(DeviceType::cuda, uniform_kernel);
  registry().mutable_op("rng_randint").set_kernel(DeviceType::cuda, randint_kernel);
  registry().mutable_op("rng_bernoulli").set_kernel(DeviceType::cuda, bernoulli_kernel);
};

}  // namespace
}  // namespace kiln::cuda
