// Built against an installed Kiln with find_package(Kiln) by the install_package test.
#include <kiln/kiln.h>

#include <iostream>

int main() {
  kiln::Tensor a = kiln::tensor({{1.f, 2.f}, {3.f, 4.f}});
  kiln::Tensor c = kiln::matmul(a, a) + 1.f;
  const auto v = c.to_vector<float>();
  std::cout << c << "\n";
  // [[7, 10], [15, 22]] + 1
  const bool ok = v == std::vector<float>{8.f, 11.f, 16.f, 23.f};
  std::cout << (ok ? "consumer: ok" : "consumer: WRONG") << "\n";
  return ok ? 0 : 1;
}
