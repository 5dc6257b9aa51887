// Reductions and their composites, checked against hand-worked values and against an f64
// reference computed with plain loops (no kiln ops).

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include "testing.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::check_error;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<double> random_values(int64_t n, unsigned seed, double lo = -1, double hi = 1) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v)
    x = d(gen);
  return v;
}

// check_close that also accepts equal infinities.
void check_close_inf(const Tensor& got, const std::vector<double>& expected, double rtol = 1e-6) {
  auto g = got.to_vector<double>();
  REQUIRE(g.size() == expected.size());
  std::vector<double> gf, ef;
  for (size_t i = 0; i < g.size(); ++i) {
    if (std::isinf(expected[i])) {
      INFO("element " << i << ": got " << g[i] << ", expected " << expected[i]);
      CHECK(g[i] == expected[i]);
    } else {
      gf.push_back(g[i]);
      ef.push_back(expected[i]);
    }
  }
  check_close(gf, ef, rtol, 1e-12);
}

Tensor make(const std::vector<double>& v, const Shape& s, DType dt) {
  return cast(from_vector(v, s), dt);
}

enum class R { sum, prod, max, min };

// Reference: walks every input element, unravels its index and folds it into its output.
struct RefResult {
  std::vector<double> values;
  Shape shape;
};
RefResult ref_reduce(const std::vector<double>& x, const Shape& s, std::vector<int64_t> axes,
                     bool keepdims, R op) {
  const int64_t rank = s.rank();
  for (auto& a : axes)
    if (a < 0) a += rank;
  if (axes.empty())
    for (int64_t i = 0; i < rank; ++i)
      axes.push_back(i);
  auto is_red = [&](int64_t i) { return std::find(axes.begin(), axes.end(), i) != axes.end(); };
  Shape out_shape;
  std::vector<int64_t> kept;
  for (int64_t i = 0; i < rank; ++i) {
    if (is_red(i)) {
      if (keepdims) out_shape.push_back(1);
    } else {
      out_shape.push_back(s[i]);
      kept.push_back(i);
    }
  }
  int64_t out_n = 1;
  for (int64_t i : kept)
    out_n *= s[i];
  double init = op == R::sum ? 0 : op == R::prod ? 1 : op == R::max ? -kInf : kInf;
  std::vector<double> out(static_cast<size_t>(out_n), init);
  std::vector<int64_t> idx(static_cast<size_t>(rank), 0);
  for (size_t flat = 0; flat < x.size(); ++flat) {
    int64_t rem = static_cast<int64_t>(flat);
    for (int64_t i = rank - 1; i >= 0; --i) {
      idx[i] = rem % s[i];
      rem /= s[i];
    }
    int64_t o = 0;
    for (int64_t i : kept)
      o = o * s[i] + idx[i];
    double& acc = out[static_cast<size_t>(o)];
    const double v = x[flat];
    switch (op) {
      case R::sum:
        acc += v;
        break;
      case R::prod:
        acc *= v;
        break;
      case R::max:
        acc = (std::isnan(v) || v > acc) ? v : acc;
        break;
      case R::min:
        acc = (std::isnan(v) || v < acc) ? v : acc;
        break;
    }
  }
  return {out, out_shape};
}

Tensor run(R op, const Tensor& x, std::vector<int64_t> axes, bool keepdims) {
  switch (op) {
    case R::sum:
      return sum(x, axes, keepdims);
    case R::prod:
      return prod(x, axes, keepdims);
    case R::max:
      return max(x, axes, keepdims);
    case R::min:
      return min(x, axes, keepdims);
  }
  return {};
}

void check_against_ref(R op, const std::vector<double>& v, const Shape& s, DType dt,
                       const std::vector<int64_t>& axes, bool keepdims, double rtol) {
  INFO("op " << int(op) << " shape " << s.str() << " dtype " << name(dt) << " axes ["
             << fmt::format("{}", fmt::join(axes, ",")) << "] keepdims " << keepdims);
  Tensor x = make(v, s, dt);
  // The reference sees the values as the kernel does: rounded to dt.
  std::vector<double> vr = x.to_vector<double>();
  RefResult ref = ref_reduce(vr, s, axes, keepdims, op);
  Tensor got = run(op, x, axes, keepdims);
  CHECK(got.shape() == ref.shape);
  CHECK(got.dtype() == dt);
  check_close(got, ref.values, rtol, rtol * 10);
}

}  // namespace

TEST_CASE("reduce: hand-worked sums, maxima, minima and products", "[reduce]") {
  Tensor x = tensor({{1.f, 2.f, 3.f}, {4.f, 5.f, 6.f}});
  check_close(sum(x, {0}), {5, 7, 9});
  check_close(sum(x, {1}), {6, 15});
  check_close(sum(x), {21});
  CHECK(sum(x).shape() == Shape{});
  CHECK(sum(x, {1}, true).shape() == Shape{2, 1});
  CHECK(sum(x, {}, true).shape() == Shape{1, 1});
  check_close(sum(x, {-1}), {6, 15});
  check_close(max(x, {0}), {4, 5, 6});
  check_close(max(x, {1}), {3, 6});
  check_close(min(x, {1}), {1, 4});
  check_close(min(x), {1});
  check_close(prod(x, {0}), {4, 10, 18});
  check_close(prod(x), {720});
  CHECK(max(x, {0}, true).shape() == Shape{1, 3});
}

TEST_CASE("reduce: dtypes follow NumPy", "[reduce]") {
  Tensor xi = tensor({{1, 2, 3}, {4, 5, 6}});  // i32
  REQUIRE(xi.dtype() == i32);
  CHECK(sum(xi).dtype() == i64);
  CHECK(sum(xi).item<int64_t>() == 21);
  CHECK(prod(xi, {1}).dtype() == i64);
  check_close(prod(xi, {1}), {6, 120});
  CHECK(max(xi).dtype() == i32);
  CHECK(max(xi).item<int32_t>() == 6);
  CHECK(min(xi, {0}).dtype() == i32);
  check_close(min(xi, {0}), {1, 2, 3});

  Tensor b = tensor({true, false, true, true});
  CHECK(sum(b).dtype() == i64);
  CHECK(sum(b).item<int64_t>() == 3);
  CHECK(max(b).dtype() == boolean);
  CHECK(max(b).item<bool>() == true);
  CHECK(min(b).item<bool>() == false);

  Tensor u = cast(tensor({200, 100, 50}), u8);
  CHECK(sum(u).dtype() == i64);
  CHECK(sum(u).item<int64_t>() == 350);  // no u8 wrap-around
  CHECK(max(u).item<int64_t>() == 200);

  Tensor big = tensor({int64_t{1} << 40, int64_t{3}});
  CHECK(sum(big).item<int64_t>() == (int64_t{1} << 40) + 3);
  CHECK(sum(tensor({1.0, 2.0})).dtype() == f64);
  CHECK(sum(tensor({1.f, 2.f})).dtype() == f32);
}

TEST_CASE("reduce: random data against a loop reference, all axis sets", "[reduce]") {
  const std::vector<Shape> shapes = {Shape{5, 6, 7}, Shape{3, 1, 4, 5}, Shape{1, 9, 1}, Shape{8}};
  unsigned seed = 1;
  for (const Shape& s : shapes) {
    std::vector<std::vector<int64_t>> axis_sets = {{}};
    const int64_t r = s.rank();
    // every non-empty subset of the axes
    for (int64_t mask = 1; mask < (1 << r); ++mask) {
      std::vector<int64_t> ax;
      for (int64_t i = 0; i < r; ++i)
        if (mask & (1 << i)) ax.push_back(i);
      axis_sets.push_back(ax);
    }
    axis_sets.push_back({-1});
    for (DType dt : {f32, f64}) {
      for (const auto& axes : axis_sets)
        for (bool keep : {false, true}) {
          auto v = random_values(s.numel(), seed++);
          const double tol = dt == f32 ? 1e-5 : 1e-12;
          check_against_ref(R::sum, v, s, dt, axes, keep, tol);
          check_against_ref(R::max, v, s, dt, axes, keep, 0);
          check_against_ref(R::min, v, s, dt, axes, keep, 0);
          auto pv = random_values(s.numel(), seed++, 0.5, 1.5);
          check_against_ref(R::prod, pv, s, dt, axes, keep, dt == f32 ? 1e-5 : 1e-12);
        }
    }
  }
}

TEST_CASE("reduce: integer data against a loop reference", "[reduce]") {
  std::mt19937 gen(7);
  std::uniform_int_distribution<int> d(-50, 50);
  const Shape s{4, 5, 6};
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (auto& x : v)
    x = d(gen);
  for (std::vector<int64_t> axes : {std::vector<int64_t>{}, {0}, {1}, {2}, {0, 2}, {1, 2}}) {
    Tensor x = make(v, s, i32);
    auto rs = ref_reduce(v, s, axes, false, R::sum);
    check_close(sum(x, axes), rs.values, 0, 0);
    check_close(max(x, axes), ref_reduce(v, s, axes, false, R::max).values, 0, 0);
    check_close(min(x, axes), ref_reduce(v, s, axes, false, R::min).values, 0, 0);
  }
}

TEST_CASE("reduce: large shapes take the parallel paths", "[reduce]") {
  struct Case {
    Shape shape;
    std::vector<int64_t> axes;
  };
  const std::vector<Case> cases = {
      {Shape{3, 70000}, {1}},       // few long rows: rows split across threads
      {Shape{70000, 3}, {0}},       // few long columns
      {Shape{300, 500}, {1}},       // many rows
      {Shape{3000, 200}, {0}},      // columns, rows split into blocks
      {Shape{2, 3000, 40}, {1}},    // outer < threads, columns
      {Shape{40, 30, 50}, {0, 2}},  // non-adjacent: transposed copy
      {Shape{200000}, {}},          // one long row
      {Shape{5, 2000, 3}, {1}},     // narrow inner
      {Shape{3, 3000, 1500}, {1}},  // wide inner chunks
  };
  unsigned seed = 100;
  for (const auto& c : cases) {
    auto v = random_values(c.shape.numel(), seed++);
    check_against_ref(R::sum, v, c.shape, f32, c.axes, false, 1e-4);
    check_against_ref(R::sum, v, c.shape, f64, c.axes, false, 1e-10);
    check_against_ref(R::max, v, c.shape, f32, c.axes, true, 0);
    check_against_ref(R::min, v, c.shape, f64, c.axes, false, 0);
  }
}

TEST_CASE("reduce: strided (transposed and sliced) inputs", "[reduce]") {
  const Shape s{4, 5, 6};
  auto v = random_values(s.numel(), 42);
  Tensor x = from_vector(v, s);         // f64
  Tensor xt = transpose(x, {2, 0, 1});  // [6,4,5]
  std::vector<double> vt;
  for (int64_t k = 0; k < 6; ++k)
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 5; ++j)
        vt.push_back(v[static_cast<size_t>((i * 5 + j) * 6 + k)]);
  const Shape st{6, 4, 5};
  for (std::vector<int64_t> axes : {std::vector<int64_t>{0}, {1}, {2}, {0, 2}, {}}) {
    check_close(sum(xt, axes), ref_reduce(vt, st, axes, false, R::sum).values, 1e-12, 1e-12);
    check_close(max(xt, axes), ref_reduce(vt, st, axes, false, R::max).values, 0, 0);
  }
  Tensor xs = slice(x, 2, 1, 5, 2);  // [4,5,2]: k = 1, 3
  std::vector<double> vs;
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 5; ++j)
      for (int64_t k : {1, 3})
        vs.push_back(v[static_cast<size_t>((i * 5 + j) * 6 + k)]);
  check_close(sum(xs, {1}), ref_reduce(vs, Shape{4, 5, 2}, {1}, false, R::sum).values, 1e-12,
              1e-12);
}

TEST_CASE("reduce: NaN propagates through max and min", "[reduce]") {
  Tensor x = tensor({{1.f, NAN, 3.f}, {4.f, 5.f, 6.f}});
  check_close(max(x, {1}), {kNaN, 6});
  check_close(min(x, {1}), {kNaN, 4});
  check_close(max(x, {0}), {4, kNaN, 6});
  check_close(min(x, {0}), {1, kNaN, 3});
  CHECK(std::isnan(max(x).item<float>()));
  // NaN first and last in a long row (vector lanes and the tail).
  std::vector<float> v(1000, 1.f);
  v[0] = NAN;
  CHECK(std::isnan(max(from_vector(v, Shape{1000})).item<float>()));
  v[0] = 1.f;
  v[999] = NAN;
  CHECK(std::isnan(min(from_vector(v, Shape{1000})).item<float>()));
  check_close_inf(max(tensor({-kInf, -kInf})), {-kInf});
}

TEST_CASE("reduce: empty inputs", "[reduce]") {
  Tensor e = zeros(Shape{0, 3});
  check_close(sum(e, {0}), {0, 0, 0});
  check_close(prod(e, {0}), {1, 1, 1});
  CHECK(sum(e, {1}).shape() == Shape{0});
  CHECK(max(e, {1}).shape() == Shape{0});
  check_close(sum(zeros(Shape{0})), std::vector<double>{0});
  check_close(sum(zeros(Shape{0}, i32)), std::vector<double>{0});
  CHECK(sum(zeros(Shape{0}, i32)).dtype() == i64);
  check_error([&] { max(e, {0}); }, {"reduce_max", "empty", "f32[0,3]"});
  check_error([&] { min(e); }, {"reduce_min", "f32[0,3]"});
  check_error([&] { argmax(e, 0); }, {"argmax", "f32[0,3]"});
}

TEST_CASE("reduce: f32 sums stay accurate", "[reduce]") {
  Tensor ones16m = ones(Shape{16777216});
  CHECK(sum(ones16m).item<float>() == 16777216.f);
  Tensor sq = ones(Shape{4096, 4096});
  check_close(sum(sq, {0}), std::vector<double>(4096, 4096.0), 0, 0);
  check_close(sum(sq, {1}), std::vector<double>(4096, 4096.0), 0, 0);
  CHECK(sum(sq).item<float>() == 16777216.f);
  // 0.1 is not representable: naive f32 accumulation drifts by ~1e-3 relative.
  Tensor tenths = full(Shape{4000000}, 0.1);
  CHECK(std::abs(sum(tenths).item<float>() - 400000.0) / 400000.0 < 1e-6);
  Tensor tcols = full(Shape{100000, 8}, 0.1);
  for (double s : sum(tcols, {0}).to_vector<double>())
    CHECK(std::abs(s - 10000.0) < 1e-2);
}

TEST_CASE("argmax and argmin", "[reduce]") {
  Tensor x = tensor({{1.f, 5.f, 5.f, 0.f}, {7.f, 7.f, 2.f, 2.f}, {3.f, 9.f, 1.f, 1.f}});
  Tensor am1 = argmax(x, 1);
  CHECK(am1.dtype() == i64);
  CHECK(am1.shape() == Shape{3});
  check_close(am1, {1, 0, 1});  // ties: the first index
  check_close(argmin(x, 1), {3, 2, 2});
  check_close(argmax(x, 0), {1, 2, 0, 1});
  check_close(argmin(x, 0), {0, 0, 2, 0});
  check_close(argmax(x, -1), {1, 0, 1});
  check_close(argmax(tensor({1.f, NAN, 3.f, NAN}), 0), {1});
  check_close(argmin(tensor({{2.f, 1.f}, {NAN, 0.f}}), 0), {1, 1});
  check_close(argmax(tensor({3, 3, 3}), 0), std::vector<double>{0});
  check_close(argmax(tensor({false, true, true}), 0), {1});

  // Random rank-3 data against a loop reference, every axis.
  const Shape s{4, 5, 6};
  auto v = random_values(s.numel(), 9);
  Tensor t = from_vector(v, s);
  for (int64_t axis = 0; axis < 3; ++axis) {
    std::vector<double> ref_max, ref_min;
    const int64_t n = s[axis];
    int64_t stride = 1;
    for (int64_t i = axis + 1; i < 3; ++i)
      stride *= s[i];
    for (int64_t flat = 0; flat < s.numel(); ++flat) {
      if ((flat / stride) % n != 0) continue;  // one output per position with index 0
      int64_t bmax = 0, bmin = 0;
      for (int64_t k = 1; k < n; ++k) {
        if (v[flat + k * stride] > v[flat + bmax * stride]) bmax = k;
        if (v[flat + k * stride] < v[flat + bmin * stride]) bmin = k;
      }
      ref_max.push_back(static_cast<double>(bmax));
      ref_min.push_back(static_cast<double>(bmin));
    }
    check_close(argmax(t, axis), ref_max, 0, 0);
    check_close(argmin(t, axis), ref_min, 0, 0);
  }
  Tensor big = from_vector(random_values(3 * 50000, 11), Shape{3, 50000});
  auto bv = big.to_vector<double>();
  for (int64_t row = 0; row < 3; ++row) {
    auto b = bv.begin() + row * 50000;
    CHECK(argmax(big, 1).to_vector<int64_t>()[row] == std::max_element(b, b + 50000) - b);
  }
}

TEST_CASE("mean, var and std", "[reduce]") {
  Tensor xi = tensor({{1, 2}, {3, 4}});
  Tensor m = mean(xi, {0});
  CHECK(m.dtype() == f32);
  check_close(m, {2, 3});
  check_close(mean(xi), {2.5});
  check_close(mean(tensor({{1.0, 2.0}, {3.0, 5.0}}), {1}, true), {1.5, 4});
  CHECK(mean(tensor({{1.0, 2.0}, {3.0, 5.0}}), {1}, true).shape() == Shape{2, 1});

  const Shape s{3, 4, 5};
  auto v = random_values(s.numel(), 21, -3, 3);
  Tensor x = from_vector(v, s);
  for (std::vector<int64_t> axes : {std::vector<int64_t>{}, {1}, {0, 2}}) {
    auto sums = ref_reduce(v, s, axes, true, R::sum);
    const double n = static_cast<double>(s.numel()) / static_cast<double>(sums.values.size());
    // Second pass over the data: squared deviations from the per-output mean.
    std::vector<double> dev(v.size());
    const Shape& ks = sums.shape;
    for (int64_t i = 0; i < s[0]; ++i)
      for (int64_t j = 0; j < s[1]; ++j)
        for (int64_t k = 0; k < s[2]; ++k) {
          const int64_t o =
              ((ks[0] == 1 ? 0 : i) * ks[1] + (ks[1] == 1 ? 0 : j)) * ks[2] + (ks[2] == 1 ? 0 : k);
          const double d = v[(i * 4 + j) * 5 + k] - sums.values[o] / n;
          dev[(i * 4 + j) * 5 + k] = d * d;
        }
    auto vars = ref_reduce(dev, s, axes, false, R::sum);
    std::vector<double> ref_mean, ref_var, ref_std;
    for (double t : sums.values)
      ref_mean.push_back(t / n);
    for (double t : vars.values) {
      ref_var.push_back(t / n);
      ref_std.push_back(std::sqrt(t / n));
    }
    check_close(mean(x, axes, true), ref_mean, 1e-12, 1e-12);
    check_close(var(x, axes), ref_var, 1e-12, 1e-12);
    check_close(kiln::std(x, axes), ref_std, 1e-12, 1e-12);
  }
  check_close(var(tensor({1.f, 1.f, 1.f})), std::vector<double>{0});
  check_close(kiln::std(tensor({2.f, 4.f})), {1});
}

TEST_CASE("logsumexp", "[reduce]") {
  check_close(logsumexp(tensor({1.0, 2.0, 3.0})),
              {std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0))}, 1e-12);
  check_close(logsumexp(tensor({1000.f, 1000.f})), {1000 + std::log(2.0)}, 1e-6);
  check_close(logsumexp(tensor({-1000.f, -1000.f})), {-1000 + std::log(2.0)}, 1e-6);
  Tensor x = tensor({{-kInf, -kInf}, {0.0, -kInf}, {kInf, 1.0}});
  check_close_inf(logsumexp(x, {1}), {-kInf, 0, kInf});
  Tensor y = tensor({{1.f, 2.f}, {3.f, 4.f}});
  Tensor k = logsumexp(y, {0}, true);
  CHECK(k.shape() == Shape{1, 2});
  check_close(k, {std::log(std::exp(1.0) + std::exp(3.0)), std::log(std::exp(2.0) + std::exp(4.0))},
              1e-6);
  CHECK(logsumexp(tensor({1, 2})).dtype() == f32);
}

TEST_CASE("softmax and log_softmax", "[reduce]") {
  const Shape s{4, 7};
  auto v = random_values(s.numel(), 5, -5, 5);
  Tensor x = from_vector(v, s);
  Tensor p = softmax(x);
  std::vector<double> ref, ref_log;
  for (int64_t i = 0; i < 4; ++i) {
    double z = 0;
    for (int64_t j = 0; j < 7; ++j)
      z += std::exp(v[i * 7 + j]);
    for (int64_t j = 0; j < 7; ++j) {
      ref.push_back(std::exp(v[i * 7 + j]) / z);
      ref_log.push_back(v[i * 7 + j] - std::log(z));
    }
  }
  check_close(p, ref, 1e-12, 1e-15);
  check_close(sum(p, {1}), std::vector<double>(4, 1.0), 1e-12);
  check_close(log_softmax(x), ref_log, 1e-12, 1e-12);
  check_close(sum(softmax(cast(x, f32), 0), {0}), std::vector<double>(7, 1.0), 1e-6);

  Tensor big = tensor({1000.f, 0.f, -1000.f});
  check_close(log_softmax(big), {0, -1000, -2000}, 1e-6);
  check_close(softmax(big), {1, 0, 0}, 1e-6, 1e-30);
  check_close(softmax(tensor({1000.f, 1000.f})), {0.5, 0.5}, 1e-6);
  check_close_inf(log_softmax(tensor({0.f, -INFINITY})), {0, -kInf});
}

TEST_CASE("sparse_softmax_cross_entropy_with_logits", "[reduce]") {
  Tensor logits = tensor({{1.f, 2.f, 3.f}, {1.f, 1.f, 1.f}});
  Tensor labels = tensor({2, 0});
  auto lse = [](std::vector<double> r) {
    double z = 0;
    for (double v : r)
      z += std::exp(v);
    return std::log(z);
  };
  Tensor loss = sparse_softmax_cross_entropy_with_logits(labels, logits);
  CHECK(loss.shape() == Shape{2});
  check_close(loss, {lse({1, 2, 3}) - 3, lse({1, 1, 1}) - 1}, 1e-6);
  // i64 labels, a batch of rank 2, a -inf logit that is not the label.
  Tensor l3 = tensor({{{0.f, -INFINITY}, {5.f, 1.f}}});
  check_close(sparse_softmax_cross_entropy_with_logits(tensor({{int64_t{0}, int64_t{1}}}), l3),
              std::vector<double>{0, lse({5, 1}) - 1}, 1e-6);

  check_error(
      [&] {
        sparse_softmax_cross_entropy_with_logits(tensor({1, 0, 2}), logits);
      },
      {"sparse_softmax_cross_entropy_with_logits", "i32[3]", "f32[2,3]"});
  check_error(
      [&] {
        sparse_softmax_cross_entropy_with_logits(tensor({1.f, 0.f}), logits);
      },
      {"sparse_softmax_cross_entropy_with_logits", "integer", "f32[2]"});
  check_error(
      [&] {
        sparse_softmax_cross_entropy_with_logits(tensor({3, 0}), logits);
      },
      {"sparse_softmax_cross_entropy_with_logits", "out of range", "3"});
  check_error(
      [&] {
        sparse_softmax_cross_entropy_with_logits(tensor({-1, 0}), logits);
      },
      {"out of range", "-1"});
  check_error(
      [&] {
        sparse_softmax_cross_entropy_with_logits(tensor({1, 0}), tensor({{1, 2}, {3, 4}}));
      },
      {"logits", "floating", "i32[2,2]"});
}

TEST_CASE("reduce: error messages", "[reduce]") {
  Tensor x = zeros(Shape{2, 3});
  check_error([&] { sum(x, {2}); }, {"sum", "axis 2", "f32[2,3]"});
  check_error([&] { max(x, {-3}); }, {"max", "axis -3", "f32[2,3]"});
  check_error([&] { sum(x, {0, 0}); }, {"sum", "repeated"});
  check_error([&] { argmax(x, 5); }, {"argmax", "axis 5", "f32[2,3]"});
  check_error([&] { mean(x, {3}); }, {"mean", "f32[2,3]"});
  check_error([&] { softmax(x, 2); }, {"softmax", "f32[2,3]"});
  check_error([&] { logsumexp(x, {7}); }, {"logsumexp", "axis 7"});
}

TEST_CASE("reduce: registry flags", "[reduce]") {
  for (const char* n : {"reduce_sum", "reduce_max", "reduce_min", "reduce_prod"}) {
    CHECK(registry().op(n).has(kReduction));
    CHECK(registry().op(n).kernel(DeviceType::cpu) != nullptr);
  }
  CHECK(registry().op("argmax").has(kNotDifferentiable));
  CHECK(registry().op("argmin").has(kNotDifferentiable));
  // Inference checks attributes it is handed directly (as a parser or tracer would).
  const TensorType t{f32, Shape{2, 3}};
  const OpDef& op = registry().op("reduce_sum");
  check_error(
      [&] {
        op.infer()(op, std::span<const TensorType>(&t, 1),
                   Attrs{{"axes", std::vector<int64_t>{1, 0}}, {"keepdims", false}});
      },
      {"reduce_sum", "sorted"});
  auto out = op.infer()(op, std::span<const TensorType>(&t, 1),
                        Attrs{{"axes", std::vector<int64_t>{1}}, {"keepdims", true}});
  CHECK(out[0] == TensorType{f32, Shape{2, 1}});
  const TensorType sym{f32, Shape{-1, 3}};
  auto so = op.infer()(op, std::span<const TensorType>(&sym, 1),
                       Attrs{{"axes", std::vector<int64_t>{1}}, {"keepdims", false}});
  CHECK(so[0].shape == Shape{-1});
}
