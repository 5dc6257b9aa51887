#pragma once

// Helpers shared by the tests.

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <kiln/kiln.h>

namespace kiln::testing {

// The gradient of the scalar function f at x0 by central differences (step h), one element
// at a time: the independent reference that gradient tests compare tapes against, in f64.
inline std::vector<double> numeric_gradient(
    const std::function<double(const std::vector<double>&)>& f, std::vector<double> x0,
    double h = 1e-6) {
  std::vector<double> g(x0.size());
  for (size_t i = 0; i < x0.size(); ++i) {
    const double keep = x0[i];
    x0[i] = keep + h;
    const double up = f(x0);
    x0[i] = keep - h;
    const double down = f(x0);
    x0[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

// Checks that two value lists agree elementwise within rtol*|expected| + atol.
inline void check_close(const std::vector<double>& got, const std::vector<double>& expected,
                        double rtol = 1e-6, double atol = 1e-12) {
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(expected[i])) {
      CHECK(std::isnan(got[i]));
      continue;
    }
    INFO("element " << i << ": got " << got[i] << ", expected " << expected[i]);
    // Equal values pass outright: infinities have no finite difference.
    CHECK((got[i] == expected[i] ||
           std::abs(got[i] - expected[i]) <= atol + rtol * std::abs(expected[i])));
  }
}

inline void check_close(const Tensor& got, const std::vector<double>& expected, double rtol = 1e-6,
                        double atol = 1e-12) {
  check_close(got.to_vector<double>(), expected, rtol, atol);
}

inline void check_close(const Tensor& got, const Tensor& expected, double rtol = 1e-6,
                        double atol = 1e-12) {
  REQUIRE(got.shape() == expected.shape());
  check_close(got.to_vector<double>(), expected.to_vector<double>(), rtol, atol);
}

// While alive, Kiln's CPU kernels keep subnormal floats (core/float_mode.h), for tests of
// accuracy down to them.
struct KeepSubnormals {
  KeepSubnormals() { kiln::set_flush_denormal(false); }
  ~KeepSubnormals() { kiln::set_flush_denormal(true); }
  KeepSubnormals(const KeepSubnormals&) = delete;
  KeepSubnormals& operator=(const KeepSubnormals&) = delete;
};

// Runs fn and checks it throws kiln::Error whose message contains every fragment.
template <class Fn>
void check_error(Fn&& fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    FAIL("expected kiln::Error");
  } catch (const kiln::Error& e) {
    const std::string msg = e.what();
    for (const auto& f : fragments) {
      INFO("message: " << msg);
      CHECK(msg.find(f) != std::string::npos);
    }
  }
}

}  // namespace kiln::testing
