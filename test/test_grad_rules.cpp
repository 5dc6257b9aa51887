// Exact-value checks of the gradient rules' conventions: broadcast operands get gradients of
// their own shape, ties, zeros in prod, strided slices, repeated gather indices, and where
// gradients stop. (test_gradcheck checks every rule against finite differences.)

#include <cmath>

#include "testing.h"

using namespace kiln;
using kiln::testing::check_close;

TEST_CASE("gradients of broadcast operands are reduced back to their shapes", "[gradcheck]") {
  Tensor a = tensor({{{1.0, 2.0, 3.0, 4.0}}, {{5.0, 6.0, 7.0, 8.0}}, {{9.0, 1.0, 2.0, 3.0}}});
  Tensor b = tensor({{1.0, 1.0, 2.0, 2.0}, {3.0, 3.0, 4.0, 4.0}});
  REQUIRE(a.shape() == Shape{3, 1, 4});
  GradientTape tape;
  tape.watch(a);
  tape.watch(b);
  Tensor y = sum(a * b);  // [3,2,4]
  auto g = tape.gradient(y, {a, b});
  REQUIRE(g[0].shape() == Shape{3, 1, 4});
  REQUIRE(g[1].shape() == Shape{2, 4});
  check_close(g[0], std::vector<double>{4, 4, 6, 6, 4, 4, 6, 6, 4, 4, 6, 6});
  check_close(g[1], std::vector<double>{15, 9, 12, 15, 15, 9, 12, 15});

  Tensor s = tensor(2.0);
  GradientTape tape2;
  tape2.watch(s);
  Tensor gs = tape2.gradient(sum(broadcast_to(s, Shape{2, 3}) * 3.0), s);
  REQUIRE(gs.shape() == Shape{});
  CHECK(gs.item<double>() == 18.0);
}

TEST_CASE("max/min split the gradient equally among tied extremes", "[gradcheck]") {
  Tensor x = tensor({{1.0, 3.0, 3.0, 2.0}, {5.0, 5.0, 5.0, 0.0}});
  {
    GradientTape tape;
    tape.watch(x);
    Tensor g = tape.gradient(sum(max(x, {1}) * tensor({1.0, 6.0})), x);
    check_close(g, std::vector<double>{0, 0.5, 0.5, 0, 2, 2, 2, 0});
  }
  {
    GradientTape tape;
    tape.watch(x);
    Tensor g = tape.gradient(max(x), x);  // one maximum, 5, three times
    check_close(g, std::vector<double>{0, 0, 0, 0, 1. / 3, 1. / 3, 1. / 3, 0});
  }
  {
    Tensor m = tensor({{2.0, 1.0, 1.0}, {0.0, 4.0, 0.0}});
    GradientTape tape;
    tape.watch(m);
    Tensor g = tape.gradient(sum(min(m, {1}, true)), m);
    check_close(g, std::vector<double>{0, 0.5, 0.5, 0.5, 0, 0.5});
  }
  // elementwise maximum/minimum: a tie goes wholly to the first operand
  {
    Tensor a = tensor({1.0, 2.0, 3.0});
    Tensor b = tensor({1.0, 1.0, 4.0});
    GradientTape tape({.persistent = true});
    tape.watch(a);
    tape.watch(b);
    Tensor hi = sum(maximum(a, b));
    Tensor lo = sum(minimum(a, b));
    auto gh = tape.gradient(hi, {a, b});
    auto gl = tape.gradient(lo, {a, b});
    check_close(gh[0], std::vector<double>{1, 1, 0});
    check_close(gh[1], std::vector<double>{0, 0, 1});
    check_close(gl[0], std::vector<double>{1, 0, 1});
    check_close(gl[1], std::vector<double>{0, 1, 0});
  }
}

TEST_CASE("prod gradients are exact with zeros", "[gradcheck]") {
  Tensor x = tensor({{2.0, 3.0, 4.0}, {2.0, 0.0, 5.0}, {0.0, 7.0, 0.0}});
  GradientTape tape;
  tape.watch(x);
  Tensor g = tape.gradient(sum(prod(x, {1})), x);
  check_close(g, std::vector<double>{12, 8, 6, 0, 10, 0, 0, 0, 0});
  for (double v : g.to_vector<double>())
    CHECK(std::isfinite(v));

  Tensor z = tensor({3.0, 0.0, -2.0});
  GradientTape tape2;
  tape2.watch(z);
  Tensor gz = tape2.gradient(prod(z), z);
  check_close(gz, std::vector<double>{0, -6, 0});
}

TEST_CASE("slice with a step scatters the gradient back with zeros between", "[gradcheck]") {
  Tensor x = arange(0, 10, 1, f64);
  GradientTape tape;
  tape.watch(x);
  Tensor y = slice(x, 0, 1, 9, 3);  // elements 1, 4, 7
  Tensor g = tape.gradient(sum(y * tensor({1.0, 2.0, 3.0})), x);
  check_close(g, std::vector<double>{0, 1, 0, 0, 2, 0, 0, 3, 0, 0});

  Tensor m = reshape(arange(0, 12, 1, f64), Shape{2, 6});
  GradientTape tape2;
  tape2.watch(m);
  Tensor gm = tape2.gradient(sum(slice(m, 1, 0, 6, 4)), m);  // columns 0 and 4
  check_close(gm, std::vector<double>{1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1, 0});
}

TEST_CASE("gather with repeated indices accumulates the gradient", "[gradcheck]") {
  Tensor x = tensor({{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0}});
  Tensor idx = tensor({2, 0, 2, 2});
  GradientTape tape;
  tape.watch(x);
  Tensor y = gather(x, idx, 0);  // [4,2]
  Tensor g =
      tape.gradient(sum(y * tensor({{1.0, 10.0}, {2.0, 20.0}, {3.0, 30.0}, {4.0, 40.0}})), x);
  check_close(g, std::vector<double>{2, 20, 0, 0, 8, 80});
}

TEST_CASE("gradients stop at conditions, indices and integer casts", "[gradcheck]") {
  Tensor x = tensor({1.5, -2.0, 3.0});
  GradientTape tape({.persistent = true});
  tape.watch(x);
  Tensor y = sum(where(x > 0.0, x, x * 2.0));
  check_close(tape.gradient(y, x), std::vector<double>{1, 2, 1});
  Tensor z = sum(cast(cast(x, i64), f64) * x);  // the integer path is cut
  check_close(tape.gradient(z, x), std::vector<double>{1, -2, 3});
  Tensor s = sum(stop_gradient(x) * x);
  check_close(tape.gradient(s, x), std::vector<double>{1.5, -2, 3});
}

TEST_CASE("pow: the exponent gets no gradient where the base is not positive", "[gradcheck]") {
  Tensor a = tensor({-2.0, 0.0, 3.0});
  Tensor b = tensor({2.0, 2.0, 2.0});
  GradientTape tape;
  tape.watch(a);
  tape.watch(b);
  auto g = tape.gradient(sum(pow(a, b)), {a, b});
  check_close(g[0], std::vector<double>{-4, 0, 6});
  check_close(g[1], std::vector<double>{0, 0, 9 * std::log(3.0)});
}
