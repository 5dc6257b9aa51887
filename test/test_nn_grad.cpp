// Gradients of matmul, conv2d, max_pool2d and avg_pool2d in depth: the backward primitives
// (core/nn_grad.h) in f64 against central finite differences of the forward op, in f32
// (oneDNN) against f64 (loops), over SAME/VALID, strides 1 and 2, dilation 2 and odd sizes;
// their own VJPs (second order) against finite differences; matmul gradients with 1-D
// operands and broadcast batch dims; gradients through a GradientTape; errors.

#include <functional>
#include <random>

#include <kiln/autograd/tape.h>
#include <kiln/backends/cpu/onednn.h>
#include <kiln/core/nn_grad.h>

#include "testing.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::check_error;

namespace {

Tensor rand_tensor(const Shape& s, uint32_t seed, DType dt = f64) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<double> v(static_cast<size_t>(s.numel()));
  for (auto& x : v)
    x = dist(gen);
  return from_vector(v, s).to(dt);
}

double scalar(const Tensor& t) {
  return t.to(f64).item<double>();
}

// Central differences (eps 1e-6) of the scalar f(args) with respect to args[k] (f64).
std::vector<double> numeric_grad(const std::function<double(const std::vector<Tensor>&)>& f,
                                 std::vector<Tensor> args, size_t k, double eps = 1e-6) {
  const Shape shape = args[k].shape();
  std::vector<double> v = args[k].to_vector<double>();
  std::vector<double> g(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const double old = v[i];
    v[i] = old + eps;
    args[k] = from_vector(v, shape);
    const double fp = f(args);
    v[i] = old - eps;
    args[k] = from_vector(v, shape);
    const double fm = f(args);
    v[i] = old;
    g[i] = (fp - fm) / (2 * eps);
  }
  return g;
}

Padding pad_of(bool same) {
  return same ? Padding::same : Padding::valid;
}

struct ConvCase {
  int64_t N, H, W, C, KH, KW, O, SH, SW, DH, DW;
  bool same;
};

std::string describe(const ConvCase& c) {
  return fmt::format("x [{},{},{},{}] filter [{},{},{},{}] strides [{},{}] dilations [{},{}] {}",
                     c.N, c.H, c.W, c.C, c.KH, c.KW, c.C, c.O, c.SH, c.SW, c.DH, c.DW,
                     c.same ? "SAME" : "VALID");
}

const std::vector<ConvCase> kConvCases = {
    {2, 5, 7, 3, 3, 3, 4, 1, 1, 1, 1, false}, {2, 5, 7, 3, 3, 3, 4, 1, 1, 1, 1, true},
    {1, 7, 6, 2, 3, 2, 3, 2, 2, 1, 1, true},  {1, 7, 6, 2, 3, 3, 3, 2, 2, 1, 1, false},
    {1, 8, 7, 2, 2, 2, 2, 2, 2, 1, 1, true},  {1, 9, 8, 2, 3, 3, 3, 1, 1, 2, 2, true},
    {2, 9, 8, 3, 3, 2, 2, 1, 2, 2, 1, false}, {1, 6, 5, 3, 1, 1, 2, 2, 2, 1, 1, true},
    {1, 8, 9, 2, 3, 3, 2, 2, 1, 2, 2, true},  {1, 5, 5, 1, 5, 5, 1, 1, 1, 1, 1, false},
};

struct PoolCase {
  int64_t N, H, W, C, KH, KW, SH, SW;
  bool same;
};

std::string describe(const PoolCase& c) {
  return fmt::format("x [{},{},{},{}] window [{},{}] strides [{},{}] {}", c.N, c.H, c.W, c.C, c.KH,
                     c.KW, c.SH, c.SW, c.same ? "SAME" : "VALID");
}

const std::vector<PoolCase> kPoolCases = {
    {2, 4, 6, 3, 2, 2, 2, 2, false}, {1, 5, 7, 2, 3, 3, 2, 2, true},
    {1, 5, 7, 2, 3, 2, 1, 1, true},  {2, 5, 7, 3, 2, 3, 1, 2, false},
    {1, 7, 5, 2, 3, 3, 1, 1, false}, {1, 6, 6, 1, 2, 2, 3, 3, true},
    {1, 5, 5, 70, 3, 3, 2, 2, true},  // more than one channel block in the loops
};

}  // namespace

// ---- conv2d backward primitives ------------------------------------------------------------

TEST_CASE("conv2d_backprop_input and _filter match finite differences of conv2d (f64)",
          "[nn_grad][conv]") {
  uint32_t seed = 1;
  for (const ConvCase& c : kConvCases) {
    INFO(describe(c));
    const Tensor x = rand_tensor({c.N, c.H, c.W, c.C}, seed++);
    const Tensor w = rand_tensor({c.KH, c.KW, c.C, c.O}, seed++);
    const std::vector<int64_t> s{c.SH, c.SW}, d{c.DH, c.DW};
    const Padding p = pad_of(c.same);
    const Tensor y = conv2d(x, w, s, p, d);
    const Tensor r = rand_tensor(y.shape(), seed++);
    auto loss = [&](const std::vector<Tensor>& a) {
      return scalar(sum(conv2d(a[0], a[1], s, p, d) * r));
    };
    const Tensor gx = conv2d_backprop_input(x.shape(), w, r, s, p, d);
    const Tensor gw = conv2d_backprop_filter(x, w.shape(), r, s, p, d);
    REQUIRE(gx.shape() == x.shape());
    REQUIRE(gw.shape() == w.shape());
    check_close(gx, numeric_grad(loss, {x, w}, 0), 1e-6, 1e-7);
    check_close(gw, numeric_grad(loss, {x, w}, 1), 1e-6, 1e-7);
  }
}

TEST_CASE("conv2d backward primitives in f32 (oneDNN) agree with f64 loops", "[nn_grad][conv]") {
  uint32_t seed = 100;
  std::vector<ConvCase> cases = kConvCases;
  cases.push_back({3, 16, 15, 8, 3, 3, 16, 2, 2, 1, 1, true});  // big enough for jit kernels
  cases.push_back({2, 12, 13, 16, 3, 3, 8, 1, 1, 2, 2, true});
  // Strided 1x1 windows whose strides skip the input's last rows or columns: oneDNN 2.6's
  // jit_1x1 backward-weights kernel summed these wrongly (by up to 1.8x the scale) or hung.
  cases.push_back({2, 8, 8, 1, 1, 1, 4, 1, 2, 1, 1, false});
  cases.push_back({2, 8, 8, 3, 1, 1, 4, 2, 1, 1, 1, true});
  cases.push_back({2, 16, 16, 1, 1, 1, 4, 2, 1, 1, 1, false});
  cases.push_back({2, 12, 12, 3, 1, 1, 4, 3, 3, 1, 1, false});
  cases.push_back({2, 9, 7, 8, 1, 1, 16, 2, 2, 1, 1, true});
  for (const ConvCase& c : cases) {
    INFO(describe(c));
    const Tensor x = rand_tensor({c.N, c.H, c.W, c.C}, seed++);
    const Tensor w = rand_tensor({c.KH, c.KW, c.C, c.O}, seed++);
    const std::vector<int64_t> s{c.SH, c.SW}, d{c.DH, c.DW};
    const Padding p = pad_of(c.same);
    const Tensor r = rand_tensor(conv2d(x, w, s, p, d).shape(), seed++);
    const Tensor gx64 = conv2d_backprop_input(x.shape(), w, r, s, p, d);
    const Tensor gw64 = conv2d_backprop_filter(x, w.shape(), r, s, p, d);
    const Tensor gx32 = conv2d_backprop_input(x.shape(), w.to(f32), r.to(f32), s, p, d);
    const Tensor gw32 = conv2d_backprop_filter(x.to(f32), w.shape(), r.to(f32), s, p, d);
    CHECK(gx32.dtype() == f32);
    CHECK(gw32.dtype() == f32);
    check_close(gx32, gx64, 1e-4, 1e-4);
    check_close(gw32, gw64, 1e-4, 1e-4);
  }
}

TEST_CASE("conv2d backward primitives reuse cached oneDNN primitives", "[nn_grad][conv]") {
  const Tensor x = rand_tensor({2, 9, 9, 4}, 7, f32);
  const Tensor w = rand_tensor({3, 3, 4, 5}, 8, f32);
  const Tensor r = rand_tensor({2, 5, 5, 5}, 9, f32);
  auto run = [&] {
    conv2d_backprop_input(x.shape(), w, r, {2, 2}, Padding::same);
    conv2d_backprop_filter(x, w.shape(), r, {2, 2}, Padding::same);
    avg_pool2d_grad(x.shape(), r.slice(3, 0, 4), {3, 3}, {2, 2}, Padding::same);
  };
  run();
  const size_t n = cpu::onednn_cache_size();
  run();
  run();
  CHECK(cpu::onednn_cache_size() == n);
}

TEST_CASE("conv2d backward primitives: non-contiguous inputs and empty batches",
          "[nn_grad][conv]") {
  const Tensor x = rand_tensor({1, 6, 5, 3}, 11);
  const Tensor w = rand_tensor({3, 3, 2, 3}, 12);  // HWOI, transposed below to HWIO
  const Tensor wt = transpose(w, {0, 1, 3, 2});
  const Tensor r = rand_tensor({1, 4, 3, 2}, 13);
  check_close(conv2d_backprop_input(x.shape(), wt, r),
              conv2d_backprop_input(x.shape(), wt.clone(), r));
  for (DType dt : {f32, f64}) {
    const Tensor gx = conv2d_backprop_input({0, 6, 5, 3}, wt.to(dt), zeros({0, 4, 3, 2}, dt));
    CHECK(gx.shape() == Shape{0, 6, 5, 3});
    const Tensor gw =
        conv2d_backprop_filter(zeros({0, 6, 5, 3}, dt), wt.shape(), zeros({0, 4, 3, 2}, dt));
    CHECK(gw.shape() == Shape{3, 3, 3, 2});
    check_close(gw, std::vector<double>(54, 0.0));
  }
}

// ---- pooling backward primitives ---------------------------------------------------------

TEST_CASE("max_pool2d_grad and avg_pool2d_grad match finite differences (f64)", "[nn_grad][pool]") {
  uint32_t seed = 200;
  for (const PoolCase& c : kPoolCases) {
    if (c.C > 8) continue;  // finite differences on the small cases only
    INFO(describe(c));
    const Tensor x = rand_tensor({c.N, c.H, c.W, c.C}, seed++);
    const std::vector<int64_t> k{c.KH, c.KW}, s{c.SH, c.SW};
    const Padding p = pad_of(c.same);
    const Tensor y = max_pool2d(x, k, s, p);
    const Tensor r = rand_tensor(y.shape(), seed++);
    auto max_loss = [&](const std::vector<Tensor>& a) {
      return scalar(sum(max_pool2d(a[0], k, s, p) * r));
    };
    auto avg_loss = [&](const std::vector<Tensor>& a) {
      return scalar(sum(avg_pool2d(a[0], k, s, p) * r));
    };
    check_close(max_pool2d_grad(x, y, r, k, s, p), numeric_grad(max_loss, {x}, 0), 1e-6, 1e-7);
    check_close(avg_pool2d_grad(x.shape(), r, k, s, p), numeric_grad(avg_loss, {x}, 0), 1e-6, 1e-7);
  }
}

TEST_CASE("pooling backward primitives in f32 agree with f64", "[nn_grad][pool]") {
  uint32_t seed = 300;
  for (const PoolCase& c : kPoolCases) {
    INFO(describe(c));
    const Tensor x = rand_tensor({c.N, c.H, c.W, c.C}, seed++);
    const std::vector<int64_t> k{c.KH, c.KW}, s{c.SH, c.SW};
    const Padding p = pad_of(c.same);
    const Tensor y = max_pool2d(x, k, s, p);
    const Tensor r = rand_tensor(y.shape(), seed++);
    const Tensor x32 = x.to(f32), r32 = r.to(f32);
    const Tensor mx32 = max_pool2d_grad(x32, max_pool2d(x32, k, s, p), r32, k, s, p);
    CHECK(mx32.dtype() == f32);
    check_close(mx32, max_pool2d_grad(x, y, r, k, s, p), 1e-5, 1e-6);
    const Tensor av32 = avg_pool2d_grad(x.shape(), r32, k, s, p);
    CHECK(av32.dtype() == f32);
    check_close(av32, avg_pool2d_grad(x.shape(), r, k, s, p), 1e-5, 1e-6);
  }
}

TEST_CASE("max_pool2d_grad routes ties to the first maximum of the window", "[nn_grad][pool]") {
  for (DType dt : {f32, f64}) {
    // Two overlapping 2x2 windows (stride 1) over a row of equal values: each window's
    // gradient goes to its top-left element.
    const Tensor x = ones({1, 2, 3, 1}, dt);
    const Tensor y = max_pool2d(x, {2, 2}, {1, 1});
    const Tensor g = from_vector(std::vector<double>{10, 20}, {1, 1, 2, 1}).to(dt);
    check_close(max_pool2d_grad(x, y, g, {2, 2}, {1, 1}), {10, 20, 0, 0, 0, 0});
    // Through a tape as well.
    GradientTape tape;
    tape.watch(x);
    const Tensor loss = sum(max_pool2d(x, {2, 2}, {1, 1}) * g);
    check_close(tape.gradient(loss, x), {10, 20, 0, 0, 0, 0});
  }
  // When the pooled value is NaN, the window's first NaN takes the gradient.
  const Tensor x = from_vector(std::vector<double>{1, NAN, 3, 4}, {1, 2, 2, 1});
  const Tensor y = full({1, 1, 1, 1}, NAN, f64);
  check_close(max_pool2d_grad(x, y, ones({1, 1, 1, 1}, f64), {2, 2}, {2, 2}), {0, 1, 0, 0});
}

// ---- second order: VJPs of the backward primitives -----------------------------------------

TEST_CASE("VJPs of the conv2d backward primitives match finite differences",
          "[nn_grad][conv][higher]") {
  uint32_t seed = 400;
  for (const ConvCase& c : {kConvCases[1], kConvCases[2], kConvCases[3], kConvCases[5]}) {
    INFO(describe(c));
    const Shape xs{c.N, c.H, c.W, c.C}, ws{c.KH, c.KW, c.C, c.O};
    const Tensor x = rand_tensor(xs, seed++);
    const Tensor w = rand_tensor(ws, seed++);
    const std::vector<int64_t> s{c.SH, c.SW}, d{c.DH, c.DW};
    const Padding p = pad_of(c.same);
    const Tensor dy = rand_tensor(conv2d(x, w, s, p, d).shape(), seed++);
    const Tensor rx = rand_tensor(xs, seed++);
    const Tensor rw = rand_tensor(ws, seed++);
    {  // input gradient as a function of (filter, dy)
      auto f = [&](const std::vector<Tensor>& a) {
        return scalar(sum(conv2d_backprop_input(xs, a[0], a[1], s, p, d) * rx));
      };
      GradientTape tape;
      tape.watch(w);
      tape.watch(dy);
      const Tensor loss = sum(conv2d_backprop_input(xs, w, dy, s, p, d) * rx);
      const auto g = tape.gradient(loss, {w, dy});
      check_close(g[0], numeric_grad(f, {w, dy}, 0), 1e-6, 1e-7);
      check_close(g[1], numeric_grad(f, {w, dy}, 1), 1e-6, 1e-7);
    }
    {  // filter gradient as a function of (x, dy)
      auto f = [&](const std::vector<Tensor>& a) {
        return scalar(sum(conv2d_backprop_filter(a[0], ws, a[1], s, p, d) * rw));
      };
      GradientTape tape;
      tape.watch(x);
      tape.watch(dy);
      const Tensor loss = sum(conv2d_backprop_filter(x, ws, dy, s, p, d) * rw);
      const auto g = tape.gradient(loss, {x, dy});
      check_close(g[0], numeric_grad(f, {x, dy}, 0), 1e-6, 1e-7);
      check_close(g[1], numeric_grad(f, {x, dy}, 1), 1e-6, 1e-7);
    }
  }
}

TEST_CASE("VJP of avg_pool2d_grad matches finite differences", "[nn_grad][pool][higher]") {
  uint32_t seed = 500;
  for (const PoolCase& c : {kPoolCases[0], kPoolCases[1], kPoolCases[5]}) {
    INFO(describe(c));
    const Shape xs{c.N, c.H, c.W, c.C};
    const std::vector<int64_t> k{c.KH, c.KW}, s{c.SH, c.SW};
    const Padding p = pad_of(c.same);
    const Tensor dy = rand_tensor(avg_pool2d(zeros(xs, f64), k, s, p).shape(), seed++);
    const Tensor rx = rand_tensor(xs, seed++);
    auto f = [&](const std::vector<Tensor>& a) {
      return scalar(sum(avg_pool2d_grad(xs, a[0], k, s, p) * rx));
    };
    GradientTape tape;
    tape.watch(dy);
    const Tensor loss = sum(avg_pool2d_grad(xs, dy, k, s, p) * rx);
    check_close(tape.gradient(loss, dy), numeric_grad(f, {dy}, 0), 1e-6, 1e-7);
  }
}

TEST_CASE("second derivatives of conv2d through nested tapes", "[nn_grad][conv][higher]") {
  // loss(x, w) = sum(conv2d(x, w)^2): d/dw of sum(dloss/dx * v) by an outer tape, against
  // finite differences of the inner gradient.
  const Tensor x = rand_tensor({1, 6, 5, 2}, 600);
  const Tensor w = rand_tensor({3, 3, 2, 3}, 601);
  const Tensor v = rand_tensor(x.shape(), 602);
  auto inner = [&](const Tensor& xx, const Tensor& ww) {
    GradientTape tape;
    tape.watch(xx);
    const Tensor loss = sum(square(conv2d(xx, ww, {2, 1}, Padding::same)));
    return tape.gradient(loss, xx);
  };
  GradientTape outer;
  outer.watch(w);
  const Tensor h = sum(inner(x, w) * v);
  const Tensor gw = outer.gradient(h, w);
  REQUIRE(gw.defined());
  auto f = [&](const std::vector<Tensor>& a) { return scalar(sum(inner(x, a[0]) * v)); };
  check_close(gw, numeric_grad(f, {w}, 0), 1e-6, 1e-7);
}

TEST_CASE("backward primitives declare their differentiability", "[nn_grad]") {
  CHECK(registry().op("conv2d_backprop_input").differentiable());
  CHECK(registry().op("conv2d_backprop_filter").differentiable());
  CHECK(registry().op("avg_pool2d_grad").differentiable());
  CHECK(registry().op("max_pool2d_grad").differentiable());
  CHECK(registry().op("max_pool2d_select").differentiable());
  for (const char* name :
       {"matmul", "conv2d", "max_pool2d", "avg_pool2d", "conv2d_backprop_input",
        "conv2d_backprop_filter", "avg_pool2d_grad", "max_pool2d_grad", "max_pool2d_select"}) {
    INFO(name);
    CHECK(static_cast<bool>(registry().op(name).vjp()));
  }
  CHECK(registry().op("avg_pool2d").vjp_needs() == kVjpNeedsNothing);
  CHECK(registry().op("conv2d").vjp_needs() == kVjpNeedsInputs);
  CHECK(registry().op("matmul").vjp_needs() == kVjpNeedsInputs);
}

// ---- through a GradientTape ----------------------------------------------------------------

TEST_CASE("conv2d and pooling gradients through a GradientTape", "[nn_grad][tape]") {
  uint32_t seed = 700;
  for (const ConvCase& c : {kConvCases[0], kConvCases[2], kConvCases[5], kConvCases[6]}) {
    INFO(describe(c));
    const Tensor x = rand_tensor({c.N, c.H, c.W, c.C}, seed++);
    const Tensor w = rand_tensor({c.KH, c.KW, c.C, c.O}, seed++);
    const std::vector<int64_t> s{c.SH, c.SW}, d{c.DH, c.DW};
    const Padding p = pad_of(c.same);
    const Tensor W = rand_tensor(conv2d(x, w, s, p, d).shape(), seed++);
    GradientTape tape;
    tape.watch(x);
    tape.watch(w);
    const Tensor loss = sum(conv2d(x, w, s, p, d) * W);
    const auto g = tape.gradient(loss, {x, w});
    REQUIRE(g.size() == 2);
    auto f = [&](const std::vector<Tensor>& a) {
      return scalar(sum(conv2d(a[0], a[1], s, p, d) * W));
    };
    check_close(g[0], numeric_grad(f, {x, w}, 0), 1e-6, 1e-7);
    check_close(g[1], numeric_grad(f, {x, w}, 1), 1e-6, 1e-7);
  }
  // A small network in f32: conv -> relu -> max pool -> avg pool, against f64.
  const Tensor x = rand_tensor({2, 9, 8, 3}, 750);
  const Tensor w = rand_tensor({3, 3, 3, 4}, 751);
  auto net_grads = [&](DType dt) {
    const Tensor xx = x.to(dt), ww = w.to(dt);
    GradientTape tape;
    tape.watch(xx);
    tape.watch(ww);
    Tensor h = relu(conv2d(xx, ww, {1, 1}, Padding::same));
    h = max_pool2d(h, {2, 2}, {2, 2}, Padding::same);
    h = avg_pool2d(h, {3, 3}, {1, 1}, Padding::same);
    const Tensor loss = sum(square(h));
    return tape.gradient(loss, {xx, ww});
  };
  const auto g64 = net_grads(f64);
  const auto g32 = net_grads(f32);
  CHECK(g32[0].dtype() == f32);
  check_close(g32[0], g64[0], 1e-3, 1e-4);
  check_close(g32[1], g64[1], 1e-3, 1e-4);
}

// ---- matmul --------------------------------------------------------------------------------

TEST_CASE("matmul gradients: 1-D operands and broadcast batch dims", "[nn_grad][matmul]") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{3, 4}, {4, 5}},
      {{2, 3, 4}, {4, 5}},
      {{3, 4}, {2, 4, 5}},
      {{2, 1, 3, 4}, {3, 4, 2}},
      {{1, 3, 4}, {2, 4, 2}},
      {{4}, {4, 5}},
      {{3, 4}, {4}},
      {{4}, {4}},
      {{4}, {2, 4, 3}},
      {{2, 3, 4}, {4}},
      {{2, 2, 3, 4}, {2, 1, 4, 2}},
  };
  uint32_t seed = 800;
  for (const auto& [as, bs] : cases) {
    INFO("a " << as.str() << " b " << bs.str());
    for (DType dt : {f64, f32}) {
      const Tensor a = rand_tensor(as, seed++, dt);
      const Tensor b = rand_tensor(bs, seed++, dt);
      const Tensor r = rand_tensor(matmul(a, b).shape(), seed++, dt);
      GradientTape tape;
      tape.watch(a);
      tape.watch(b);
      const Tensor loss = sum(matmul(a, b) * r);
      const auto g = tape.gradient(loss, {a, b});
      REQUIRE(g[0].shape() == as);
      REQUIRE(g[1].shape() == bs);
      CHECK(g[0].dtype() == dt);
      auto f = [&](const std::vector<Tensor>& t) {
        return scalar(sum(matmul(t[0], t[1]) * r.to(f64)));
      };
      const double tol = dt == f64 ? 1e-7 : 1e-4;
      check_close(g[0], numeric_grad(f, {a.to(f64), b.to(f64)}, 0), tol, tol);
      check_close(g[1], numeric_grad(f, {a.to(f64), b.to(f64)}, 1), tol, tol);
    }
  }
}

TEST_CASE("matmul second derivatives through nested tapes", "[nn_grad][matmul][higher]") {
  // d/da of sum(dloss/db) where loss = sum((a @ b)^2).
  const Tensor a = rand_tensor({2, 3}, 900);
  const Tensor b = rand_tensor({3, 2}, 901);
  auto inner = [&](const Tensor& aa) {
    GradientTape tape;
    tape.watch(b);
    return tape.gradient(sum(square(matmul(aa, b))), b);
  };
  GradientTape outer;
  outer.watch(a);
  const Tensor ga = outer.gradient(sum(inner(a)), a);
  auto f = [&](const std::vector<Tensor>& t) { return scalar(sum(inner(t[0]))); };
  check_close(ga, numeric_grad(f, {a}, 0), 1e-6, 1e-7);
}

// ---- errors ------------------------------------------------------------------------------

TEST_CASE("backward primitives reject bad shapes and dtypes", "[nn_grad][errors]") {
  const Tensor w = zeros({3, 3, 2, 4}, f32);
  check_error(
      [&] {
        conv2d_backprop_input({1, 5, 5, 2}, w, zeros({1, 4, 3, 4}, f32));
      },
      {"conv2d_backprop_input", "grad must have shape [1,3,3,4]", "f32[1,4,3,4]"});
  check_error(
      [&] {
        conv2d_backprop_input({1, 5, 5, 3}, w, zeros({1, 3, 3, 4}, f32));
      },
      {"conv2d_backprop_input", "input channels differ"});
  check_error(
      [&] {
        conv2d_backprop_input({1, 5, 5, 2}, w, zeros({1, 3, 3, 4}, f64));
      },
      {"conv2d_backprop_input", "different dtypes"});
  check_error(
      [&] {
        conv2d_backprop_input({1, 5, 5, 2}, w.to(i32), zeros({1, 3, 3, 4}, i32));
      },
      {"conv2d_backprop_input", "floating dtype", "i32"});
  check_error(
      [&] {
        conv2d_backprop_filter(zeros({1, 5, 5, 2}, f32), {3, 3, 2, 4}, zeros({1, 5, 5, 4}, f32));
      },
      {"conv2d_backprop_filter", "grad must have shape [1,3,3,4]"});
  check_error(
      [&] {
        conv2d_backprop_filter(zeros({1, 5, 5, 2}, f32), {3, 3, 2, 4}, zeros({1, 3, 3, 4}, f32),
                               {0, 1});
      },
      {"conv2d_backprop_filter", "strides"});
  const Tensor x = zeros({1, 4, 4, 2}, f32);
  check_error(
      [&] {
        max_pool2d_grad(x, zeros({1, 2, 2, 2}, f32), zeros({1, 3, 2, 2}, f32), {2, 2}, {2, 2});
      },
      {"max_pool2d_grad", "max_pool2d's output"});
  check_error(
      [&] {
        avg_pool2d_grad({1, 4, 4, 2}, zeros({1, 2, 2, 3}, f32), {2, 2}, {2, 2});
      },
      {"avg_pool2d_grad", "[1,2,2,2]"});
}
