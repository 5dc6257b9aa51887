#pragma once

// What the CUDA tests share: the device they use, the skip when there is none, and the
// comparison of a GPU result with the CPU's.
#include <kiln/kiln.h>

#include "testing.h"

namespace kiln::testing {

inline const Device gpu = Device::cuda(0);

// True when a CUDA device is present; otherwise the test says it skipped.
inline bool have_gpu() {
  if (device_count(DeviceType::cuda) > 0) return true;
  WARN("skipped: no CUDA device (device_count(cuda) == 0)");
  return false;
}

// The GPU's result against the CPU's: floats within rtol/atol (f32 on both sides: the GPU's
// libm and the CPU's differ by an ulp or two), integers and bools exactly.
inline void same(const Tensor& got_gpu, const Tensor& want_cpu, double rtol = 1e-5,
                 double atol = 1e-6) {
  REQUIRE(got_gpu.device() == gpu);
  const Tensor got = got_gpu.to(Device::cpu());
  REQUIRE(got.type() == want_cpu.type());
  if (is_floating(want_cpu.dtype()))
    check_close(got, want_cpu.to_vector<double>(), rtol, atol);
  else
    CHECK(got.to_vector<double>() == want_cpu.to_vector<double>());
}

}  // namespace kiln::testing
