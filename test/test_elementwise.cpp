// Elementwise and movement ops against values computed independently: libm in f64 over
// random inputs, and small hand-worked cases.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>

#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

#include "testing.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::check_error;

namespace {

std::vector<double> random_values(size_t n, double lo, double hi, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(n);
  for (auto& x : v)
    x = d(gen);
  return v;
}

struct UnaryCase {
  const char* name;
  std::function<Tensor(const Tensor&)> op;
  std::function<double(double)> ref;
  double lo, hi;
};

double erf_ref(double x) {
  return std::erf(x);
}
double gelu_ref(double x) {
  return 0.5 * x * std::erfc(-x / std::sqrt(2.0));
}

}  // namespace

TEST_CASE("unary ops against libm in f64, for f32 and f64 inputs") {
  const UnaryCase cases[] = {
      {"neg", [](const Tensor& x) { return neg(x); }, [](double x) { return -x; }, -5, 5},
      {"abs", [](const Tensor& x) { return abs(x); }, [](double x) { return std::fabs(x); }, -5, 5},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double x) { return std::exp(x); }, -20,
       20},
      {"log", [](const Tensor& x) { return log(x); }, [](double x) { return std::log(x); }, 1e-3,
       1e3},
      {"log1p", [](const Tensor& x) { return log1p(x); }, [](double x) { return std::log1p(x); },
       -0.9, 5},
      {"expm1", [](const Tensor& x) { return expm1(x); }, [](double x) { return std::expm1(x); },
       -3, 3},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, 0,
       100},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, [](double x) { return 1 / std::sqrt(x); },
       0.01, 100},
      {"square", [](const Tensor& x) { return square(x); }, [](double x) { return x * x; }, -5, 5},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double x) { return std::tanh(x); }, -6,
       6},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); },
       [](double x) { return 1 / (1 + std::exp(-x)); }, -30, 30},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double x) { return x > 0 ? x : 0; }, -5,
       5},
      {"gelu", [](const Tensor& x) { return gelu(x); }, gelu_ref, -6, 6},
      {"erf", [](const Tensor& x) { return erf(x); }, erf_ref, -4, 4},
      {"sin", [](const Tensor& x) { return sin(x); }, [](double x) { return std::sin(x); }, -10,
       10},
      {"cos", [](const Tensor& x) { return cos(x); }, [](double x) { return std::cos(x); }, -10,
       10},
      {"floor", [](const Tensor& x) { return floor(x); }, [](double x) { return std::floor(x); },
       -10, 10},
      {"ceil", [](const Tensor& x) { return ceil(x); }, [](double x) { return std::ceil(x); }, -10,
       10},
      {"sign", [](const Tensor& x) { return sign(x); },
       [](double x) { return double((x > 0) - (x < 0)); }, -3, 3},
  };
  uint32_t seed = 1;
  for (const auto& c : cases) {
    INFO("op " << c.name);
    const auto v = random_values(1031, c.lo, c.hi, seed++);
    std::vector<double> expected(v.size());
    for (size_t i = 0; i < v.size(); ++i)
      expected[i] = c.ref(v[i]);
    Tensor x64 = from_vector(v, {1031});
    Tensor y64 = c.op(x64);
    CHECK(y64.dtype() == f64);
    check_close(y64, expected, 1e-14, 1e-15);
    // f32: compare to the f64 reference at the f32-rounded input.
    Tensor x32 = x64.to(f32);
    std::vector<double> expected32(v.size());
    const auto v32 = x32.to_vector<double>();
    for (size_t i = 0; i < v.size(); ++i)
      expected32[i] = c.ref(v32[i]);
    Tensor y32 = c.op(x32);
    CHECK(y32.dtype() == f32);
    check_close(y32, expected32, 2e-6, 1e-6);
  }
}

TEST_CASE("unary ops: hand-worked cases and edge values") {
  check_close(round(tensor({0.5, 1.5, 2.5, -0.5, -1.5, 2.4})), {0, 2, 2, -0, -2, 2});
  check_close(sigmoid(tensor({-1000.0, 0.0, 1000.0})), {0, 0.5, 1});
  check_close(abs(tensor({-3, 0, 4})), {3, 0, 4});
  CHECK(abs(tensor({-3, 0, 4})).dtype() == i32);
  check_close(exp(tensor({0, 1})), {1, std::exp(1.0)}, 1e-6);  // ints become f32
  CHECK(exp(tensor({0, 1})).dtype() == f32);
  CHECK(logical_not(tensor({true, false})).to_vector<bool>() == std::vector<bool>{false, true});
  check_close(floor(tensor({3, -3})), {3, -3});
  CHECK(std::isnan(log(tensor({-1.0})).item<double>()));
  check_close(relu(tensor({-2, 0, 5})), {0, 0, 5});
  check_close(neg(tensor({int64_t{-9223372036854775807LL - 1}})),
              {-9223372036854775808.0});  // wraps, no UB
}

TEST_CASE("binary ops against f64 references, with broadcasting and views") {
  const auto av = random_values(6 * 5, -4, 4, 11), bv = random_values(5, 0.5, 3, 12);
  Tensor a = from_vector(av, {6, 5}), b = from_vector(bv, {5});
  struct Case {
    const char* name;
    std::function<Tensor(const Tensor&, const Tensor&)> op;
    std::function<double(double, double)> ref;
  };
  const Case cases[] = {
      {"add", [](auto& x, auto& y) { return x + y; }, [](double x, double y) { return x + y; }},
      {"sub", [](auto& x, auto& y) { return x - y; }, [](double x, double y) { return x - y; }},
      {"mul", [](auto& x, auto& y) { return x * y; }, [](double x, double y) { return x * y; }},
      {"div", [](auto& x, auto& y) { return x / y; }, [](double x, double y) { return x / y; }},
      {"pow", [](auto& x, auto& y) { return pow(abs(x), y); },
       [](double x, double y) { return std::pow(std::fabs(x), y); }},
      {"maximum", [](auto& x, auto& y) { return maximum(x, y); },
       [](double x, double y) { return x > y ? x : y; }},
      {"minimum", [](auto& x, auto& y) { return minimum(x, y); },
       [](double x, double y) { return x < y ? x : y; }},
      {"floor_div", [](auto& x, auto& y) { return floor_div(x, y); },
       [](double x, double y) { return std::floor(x / y); }},
  };
  for (const auto& c : cases) {
    INFO("op " << c.name);
    std::vector<double> expected;
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 5; ++j)
        expected.push_back(c.ref(av[i * 5 + j], bv[j]));
    check_close(c.op(a, b), expected, 1e-14, 1e-14);
    // Transposed operand: (a^T)^T equals a.
    check_close(c.op(a.transpose().transpose(), b), expected, 1e-14, 1e-14);
    // f32
    check_close(c.op(a.to(f32), b.to(f32)), expected, 2e-6, 2e-6);
  }
}

TEST_CASE("integer arithmetic and comparisons") {
  Tensor a = tensor({-7, -1, 0, 3, 8});
  Tensor b = tensor({2, 3, 5, 3, -3});
  CHECK((a + b).to_vector<int32_t>() == std::vector<int32_t>{-5, 2, 5, 6, 5});
  CHECK((a * b).to_vector<int32_t>() == std::vector<int32_t>{-14, -3, 0, 9, -24});
  CHECK(floor_div(a, b).to_vector<int32_t>() == std::vector<int32_t>{-4, -1, 0, 1, -3});
  // The div primitive on integers (the public div converts them to f32 first) truncates, and
  // the most negative value over -1 wraps to itself in both divisions (x86's idiv traps).
  const OpDef& div_op = registry().op("div");
  CHECK(dispatch1(div_op, {a, b}).to_vector<int32_t>() == std::vector<int32_t>{-3, 0, 0, 1, -2});
  const int32_t lo32 = std::numeric_limits<int32_t>::min();
  const int64_t lo64 = std::numeric_limits<int64_t>::min();
  CHECK(dispatch1(div_op, {tensor({lo32, 7}), tensor({-1, -1})}).to_vector<int32_t>() ==
        std::vector<int32_t>{lo32, -7});
  CHECK(floor_div(tensor({lo32}), tensor({-1})).to_vector<int32_t>() == std::vector<int32_t>{lo32});
  CHECK(dispatch1(div_op, {tensor({lo64}), tensor({int64_t{-1}})}).to_vector<int64_t>() ==
        std::vector<int64_t>{lo64});
  CHECK(pow(tensor({2, 3, -2}), tensor({10, 3, 3})).to_vector<int32_t>() ==
        std::vector<int32_t>{1024, 27, -8});
  CHECK((a < b).to_vector<bool>() == std::vector<bool>{true, true, true, false, false});
  CHECK((a == 3).to_vector<bool>() == std::vector<bool>{false, false, false, true, false});
  CHECK((a >= 0).to_vector<bool>() == std::vector<bool>{false, false, true, true, true});
  CHECK((a != b).to_vector<bool>() == std::vector<bool>{true, true, true, false, true});
  CHECK(logical_and(a > 0, b > 0).to_vector<bool>() ==
        std::vector<bool>{false, false, false, true, false});
  CHECK(logical_or(a > 0, b > 0).to_vector<bool>() ==
        std::vector<bool>{true, true, true, true, true});
  // Mixed: i32 tensor compared with a float scalar promotes to f32.
  CHECK((tensor({1, 2}) < 1.5).to_vector<bool>() == std::vector<bool>{true, false});
  // NaN propagates through maximum.
  CHECK(std::isnan(maximum(tensor({NAN}), tensor({1.f})).item<float>()));
}

TEST_CASE("where, clip, cast") {
  Tensor c = tensor({true, false, true});
  check_close(where(c, tensor({1.0, 2.0, 3.0}), tensor({-1.0})), {1, -1, 3});
  check_close(where(c, 5, tensor({7, 8, 9})), {5, 8, 5});
  check_close(where(tensor({{true}, {false}}), tensor({1.0, 2.0}), 0.0), {1, 2, 0, 0});
  check_close(clip(tensor({-3.0, 0.5, 9.0}), -1, 1), {-1, 0.5, 1});
  CHECK(cast(tensor({1.7, -1.7, 300.0}), u8).to_vector<int32_t>() ==
        std::vector<int32_t>{1, 0, 255});
  CHECK(cast(tensor({1.7, -1.7}), i32).to_vector<int32_t>() == std::vector<int32_t>{1, -1});
  CHECK(cast(tensor({0.0, 2.0}), boolean).to_vector<bool>() == std::vector<bool>{false, true});
  CHECK(cast(tensor({NAN}), i64).item<int64_t>() == 0);
  Tensor x = tensor({1.f});
  CHECK(cast(x, f32).get() == x.get());  // no-op casts return the same tensor
  check_error([] { clip(ones({2}), 2, 1); }, {"clip"});
}

TEST_CASE("movement: pad, concat, stack, split, gather, scatter_add, one_hot") {
  Tensor a = tensor({{1, 2}, {3, 4}});
  CHECK(pad(a, {{1, 0}, {0, 2}}, 9).to_vector<int32_t>() ==
        std::vector<int32_t>{9, 9, 9, 9, 1, 2, 9, 9, 3, 4, 9, 9});
  CHECK(concat({a, tensor({{5, 6}})}, 0).to_vector<int32_t>() ==
        std::vector<int32_t>{1, 2, 3, 4, 5, 6});
  CHECK(concat({a, a.transpose()}, 1).to_vector<int32_t>() ==
        std::vector<int32_t>{1, 2, 1, 3, 3, 4, 2, 4});
  Tensor s = stack({tensor({1, 2}), tensor({3, 4})}, 1);
  CHECK(s.shape() == Shape{2, 2});
  CHECK(s.to_vector<int32_t>() == std::vector<int32_t>{1, 3, 2, 4});
  auto parts = split(tensor({1, 2, 3, 4, 5, 6}), 3);
  REQUIRE(parts.size() == 3);
  CHECK(parts[2].to_vector<int32_t>() == std::vector<int32_t>{5, 6});
  Tensor x = tensor({{10, 11, 12}, {20, 21, 22}});
  CHECK(gather(x, tensor({2, 0, 2}), 1).to_vector<int32_t>() ==
        std::vector<int32_t>{12, 10, 12, 22, 20, 22});
  CHECK(gather(x, tensor({{1}, {0}}), 0).shape() == Shape{2, 1, 3});
  CHECK(scatter_add(zeros({4}), tensor({0, 2, 0}), tensor({1.f, 2.f, 3.f})).to_vector<float>() ==
        std::vector<float>{4, 0, 2, 0});
  CHECK(one_hot(tensor({2, 0, 5}), 3).to_vector<float>() ==
        std::vector<float>{0, 0, 1, 1, 0, 0, 0, 0, 0});
  check_error([] { split(ones({5}), 2); }, {"split", "f32[5]"});
  check_error([] { pad(ones({2}), {{-1, 0}}); }, {"pad", "negative"});
}

TEST_CASE("large elementwise work splits across threads and stays exact") {
  const int64_t n = 3'000'001;
  Tensor a = arange(0, n, 1, f64);
  Tensor b = a * 2.0 + 1.0;
  const auto v = b.to_vector<double>();
  bool ok = true;
  for (int64_t i = 0; i < n; ++i)
    ok &= v[i] == 2.0 * i + 1.0;
  CHECK(ok);
  Tensor strided = b.slice(0, 1, n, 3);
  CHECK(strided.numel() == (n - 1 + 2) / 3);
  CHECK(strided.to_vector<double>()[1000] == 2.0 * 3001 + 1.0);
}

TEST_CASE(
    "subnormals: flushed by default in eager, interpreted and compiled code; kept on request") {
  // 1e-20 squared is 1e-40, a subnormal f32; 1e-160 squared a subnormal f64. A million
  // elements, so that the eager kernel and the compiled one both split across the threads.
  const int64_t n = 1 << 20;
  const float sub = std::numeric_limits<float>::denorm_min() * 1000;  // copied in, not computed
  const Tensor x = full({n}, 1e-20f), xd = full({4}, 1e-160, f64),
               tiny = from_vector(std::vector<float>(static_cast<size_t>(n), sub), {n});
  auto square = [](const Tensor& a) { return a * a; };
  auto compiled = kiln::function(square);
  auto interpreted = kiln::function(square, FunctionOptions{.jit_compile = false});
  auto all_equal = [](const Tensor& t, double v) {
    const std::vector<double> got = t.to_vector<double>();
    return std::all_of(got.begin(), got.end(), [&](double g) { return g == v; });
  };
#if defined(__x86_64__)
  const uint32_t caller_mode = _mm_getcsr();
#endif
  CHECK(kiln::flush_denormal());
  for (const Tensor& y : {square(x), compiled(x), interpreted(x)})
    CHECK(all_equal(y, 0.0));
  CHECK(all_equal(square(xd), 0.0));
  // Subnormal inputs read as zero: x + 0 is 0.
  CHECK(all_equal(tiny + 0.f, 0.0));
  {
    const kiln::testing::KeepSubnormals keep;
    const double expected = static_cast<double>(1e-20f * 1e-20f);  // this thread keeps them
    REQUIRE(expected > 0.0);
    for (const Tensor& y : {square(x), compiled(x), interpreted(x)})
      CHECK(all_equal(y, expected));
    CHECK(all_equal(square(xd), 1e-160 * 1e-160));
    CHECK(all_equal(tiny + 0.f, static_cast<double>(sub)));
  }
#if defined(__x86_64__)
  // The caller's own mode is left as it was (the exception flags aside).
  CHECK((_mm_getcsr() & ~0x3fu) == (caller_mode & ~0x3fu));
#endif
}
