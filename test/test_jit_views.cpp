// Movement ops folded into kernel indexing: transposes, slices, broadcasts and reshapes
// feeding an elementwise kernel become views the kernel reads by stride (no step, no copy).
#include <kiln/kiln.h>

#include "testing.h"

using namespace kiln;
using kiln::testing::check_close;

namespace {

// Compiled against the interpreter, and the kernel count and folded views of the compiled one.
template <class F, class... T>
void check_folded(F fn, int64_t kernels, const std::string& view, const T&... args) {
  auto compiled = kiln::function(fn);
  auto reference = kiln::function(fn, FunctionOptions{.jit_compile = false});
  check_close(compiled(args...), reference(args...), 1e-6, 1e-6);
  ConcreteFunction cf = compiled.get_concrete_function(args...);
  const std::string ir = cf.ir(IRStage::optimized);
  INFO(ir);
  CHECK(cf.kernel_count() == kernels);
  if (!view.empty()) CHECK(ir.find("(view " + view + ")") != std::string::npos);
}

}  // namespace

TEST_CASE("views: a transpose feeding an elementwise chain is read by stride") {
  random::seed(11);
  const Tensor x = random::normal({48, 33}), y = random::normal({33, 48});
  check_folded(
      [](const Tensor& a, const Tensor& b) {
        return transpose(a, {1, 0}) * b + 1.f;
      },
      1, "transpose", x, y);
  // Batched: the last two dims swapped, with a broadcast bias.
  const Tensor z = random::normal({3, 5, 7}), bias = random::normal({5});
  check_folded(
      [](const Tensor& a, const Tensor& b) {
        return exp(transpose(a, {0, 2, 1}) - b) * 0.5f;
      },
      1, "transpose", z, bias);
}

TEST_CASE("views: slices with steps, broadcasts and reshape chains") {
  random::seed(12);
  const Tensor x = random::normal({16, 40}), y = random::normal({16, 10});
  check_folded([](const Tensor& a, const Tensor& b) { return tanh(slice(a, 1, 3, 33, 3) + b) * b; },
               1, "slice", x, y);
  const Tensor row = random::normal({10}), m = random::normal({6, 10});
  check_folded(
      [](const Tensor& r, const Tensor& a) {
        return broadcast_to(r, {6, 10}) * a - r;
      },
      1, "", row, m);  // simplified away: the kernel broadcasts
  // A reshape of a transpose (a copy) folds the reshape; a transpose of a reshape folds both.
  const Tensor v = random::normal({4, 6, 5}), w = random::normal({5, 24});
  check_folded(
      [](const Tensor& a, const Tensor& b) {
        return transpose(reshape(a, {24, 5}), {1, 0}) + b;
      },
      1, "reshape", v, w);
}

TEST_CASE("views: a folded transpose under a dynamic batch dim") {
  random::seed(13);
  auto f = kiln::function(
      [](const Tensor& a, const Tensor& b) {
        return sigmoid(transpose(a, {1, 0})) * b;
      },
      {TensorSpec({8, -1}), TensorSpec({-1, 8})});
  for (int64_t n : {1, 7, 130}) {
    const Tensor a = random::normal({8, n}), b = random::normal({n, 8});
    check_close(f(a, b), sigmoid(transpose(a, {1, 0})) * b, 1e-6, 1e-7);
  }
}

TEST_CASE("views: a view the kernel shares with an input that dies is never overwritten") {
  // x dies at the kernel that also reads transpose(x): the kernel must not write over x.
  const Tensor x = random::normal({16, 16});
  check_folded(
      [](const Tensor& a) {
        Tensor s = a * 2.f;  // a kernel output that dies at the next kernel
        return s + transpose(s, {1, 0});
      },
      2, "transpose", x);
}
