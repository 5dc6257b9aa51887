// GradientTape and Variable behaviour: TF2 semantics, higher order, Jacobians, memory.
#include <cmath>

#include "testing.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::check_error;

TEST_CASE("Variable: a handle with in-place updates and checked shapes") {
  Variable v(tensor({1.0, 2.0}), "v");
  Variable alias = v;
  v.assign(tensor({3.0, 4.0}));
  check_close(alias.value(), {3, 4});
  alias.assign_add(tensor({1.0, 1.0}));
  check_close(v, {4, 5});
  v.assign_sub(tensor({4.0, 5.0}));
  check_close(v.value(), {0, 0});
  CHECK(v.name() == "v");
  CHECK(v.trainable());
  CHECK(Variable(ones({1}), "frozen", false).trainable() == false);
  check_error([&] { v.assign(ones({3}, f64)); }, {"assign", "'v'", "f64[2]", "f64[3]"});
  check_error([&] { v.assign_add(ones({2}, f32)); }, {"assign_add", "f32[2]"});
  // Usable wherever a Tensor is expected.
  check_close(v + 1.0, {1, 1});
  // The initial value is copied: later changes to the source do not leak in.
  Tensor src = tensor({1.f});
  Variable w(src);
  w.assign(tensor({2.f}));
  check_close(src, {1});
}

TEST_CASE("tape: gradients of a simple function w.r.t. tensors and variables") {
  Variable w(tensor({{1.0, 2.0}, {3.0, 4.0}}), "w");
  Variable b(tensor({0.5, -0.5}), "b");
  Tensor x = tensor({{1.0, -1.0}});
  GradientTape tape;
  Tensor y = sum(square(matmul(x, w) + b));
  auto g = tape.gradient(y, {w, b});
  // z = x@w + b = [-2+0.5, -2-0.5] = [-1.5, -2.5]; dy/dz = 2z; dw = x^T (2z); db = 2z
  check_close(g[1], {-3, -5});
  check_close(g[0], {-3, -5, 3, 5});
}

TEST_CASE("tape: non-persistent tapes answer once; persistent ones many times") {
  Tensor x = tensor({3.0});
  {
    GradientTape tape;
    tape.watch(x);
    Tensor y = x * x;
    check_close(tape.gradient(y, x), {6});
    check_error([&] { tape.gradient(y, x); }, {"non-persistent", "persistent = true"});
  }
  {
    GradientTape tape({.persistent = true});
    tape.watch(x);
    Tensor y = x * x;
    Tensor z = y * y;
    check_close(tape.gradient(z, x), {4 * 27.0});
    check_close(tape.gradient(y, x), {6});
  }
}

TEST_CASE("tape: watch_accessed_variables, stop_recording, stop_gradient, reset") {
  Variable v(tensor({2.0}), "v");
  {
    GradientTape tape({.watch_accessed_variables = false});
    Tensor y = v * v;
    CHECK_FALSE(tape.gradient(y, {v})[0].defined());
  }
  {
    GradientTape tape({.watch_accessed_variables = false});
    tape.watch(v);
    Tensor y = v * v;
    check_close(tape.gradient(y, {v})[0], {4});
  }
  {
    Tensor x = tensor({2.0});
    GradientTape tape({.persistent = true});
    tape.watch(x);
    Tensor y;
    {
      auto paused = tape.stop_recording();
      y = x * x;  // not recorded
    }
    Tensor z = x * 3.0 + stop_gradient(x * x);
    CHECK_FALSE(tape.gradient(y, {x})[0].defined());
    check_close(tape.gradient(z, {x})[0], {3});
    tape.reset();
    Tensor w = x * x;  // x is no longer watched after reset
    CHECK_FALSE(tape.gradient(w, {x})[0].defined());
  }
}

TEST_CASE("tape: unconnected and integer sources") {
  Tensor x = tensor({1.0, 2.0}), u = tensor({5.0}), n = tensor({1, 2});
  GradientTape tape({.persistent = true});
  tape.watch(x);
  tape.watch(u);
  tape.watch(n);
  Tensor y = sum(x * cast(n, f64));
  auto g = tape.gradient(y, {x, u, n});
  check_close(g[0], {1, 2});
  CHECK_FALSE(g[1].defined());
  CHECK_FALSE(g[2].defined());
  auto gz = tape.gradient(y, {x, u, n}, {}, Unconnected::zero);
  check_close(gz[1], std::vector<double>{0.0});
  CHECK_FALSE(gz[2].defined());  // integers never get gradients
  // output_gradients weight a non-scalar target.
  Tensor v = x * x;
  check_close(tape.gradient(v, {x}, {tensor({10.0, 100.0})})[0], {20, 400});
  // A non-scalar target without output_gradients is summed.
  check_close(tape.gradient(v, {x})[0], {2, 4});
}

TEST_CASE("tape: custom_gradient") {
  // A clipped-gradient identity: forward is x, backward is clip(g, -1, 1).
  auto clip_grad = custom_gradient([](const Tensor& x) { return x * 1.0; },
                                   [](const Tensor& x, const Tensor& y, const Tensor& g) {
                                     return std::vector<Tensor>{clip(g, -1, 1)};
                                   });
  Tensor x = tensor({1.0, 2.0});
  GradientTape tape;
  tape.watch(x);
  Tensor y = sum(clip_grad(x) * tensor({5.0, 0.5}));
  check_close(tape.gradient(y, x), {1, 0.5});

  // Two inputs: f(a, b) = a*b with the gradient of a deliberately scaled by 10.
  auto f = custom_gradient([](const Tensor& a, const Tensor& b) { return a * b; },
                           [](const Tensor& a, const Tensor& b, const Tensor&, const Tensor& g) {
                             return std::vector<Tensor>{g * b * 10.0, g * a};
                           });
  Tensor a = tensor({2.0}), b = tensor({3.0});
  GradientTape t2;
  t2.watch(a);
  t2.watch(b);
  auto g = t2.gradient(f(a, b), {a, b});
  check_close(g[0], {30});
  check_close(g[1], {2});
}

TEST_CASE("higher order: second derivatives against closed forms") {
  const std::vector<double> xs = {-1.3, -0.2, 0.4, 1.7};
  Tensor x = from_vector(xs, {4});
  auto second = [&](auto f) {
    GradientTape outer;
    outer.watch(x);
    Tensor dy;
    {
      GradientTape inner;
      inner.watch(x);
      dy = inner.gradient(f(x), x);
    }
    return outer.gradient(dy, x);
  };
  std::vector<double> tanh2, sin2, cube2;
  for (double v : xs) {
    const double t = std::tanh(v);
    tanh2.push_back(-2 * t * (1 - t * t));
    sin2.push_back(-std::sin(v));
    cube2.push_back(6 * v);
  }
  check_close(second([](const Tensor& t) { return tanh(t); }), tanh2, 1e-12, 1e-12);
  check_close(second([](const Tensor& t) { return sin(t); }), sin2, 1e-12, 1e-12);
  check_close(second([](const Tensor& t) { return t * t * t; }), cube2, 1e-12, 1e-12);
  // The same with one persistent tape differentiating its own gradient.
  GradientTape tape({.persistent = true});
  tape.watch(x);
  Tensor y = x * x * x;
  Tensor g = tape.gradient(y, x);
  check_close(tape.gradient(g, x), cube2, 1e-12, 1e-12);
}

namespace {
// A small MLP loss in f64: sum(tanh(x@w1 + b1) @ w2)^2-ish.
Tensor mlp_loss(const Tensor& w1, const Tensor& w2, const Tensor& x) {
  Tensor h = tanh(matmul(x, w1));
  return sum(square(matmul(h, w2)));
}
}  // namespace

TEST_CASE("higher order: Hessian-vector product of an MLP against finite differences") {
  random::seed(7);
  Tensor x = random::normal({5, 3}, 0, 1, f64);
  Tensor w1 = random::normal({3, 4}, 0, 0.5, f64);
  Tensor w2 = random::normal({4, 2}, 0, 0.5, f64);
  Tensor v = random::normal({3, 4}, 0, 1, f64);
  // HVP by double backprop: d/dw1 <grad_w1 L, v>.
  Tensor hvp;
  {
    GradientTape outer;
    outer.watch(w1);
    Tensor g;
    {
      GradientTape inner;
      inner.watch(w1);
      g = inner.gradient(mlp_loss(w1, w2, x), w1);
    }
    hvp = outer.gradient(sum(g * v), w1);
  }
  // Finite differences of gradients: (g(w1 + eps v) - g(w1 - eps v)) / 2eps.
  auto grad_at = [&](const Tensor& w) {
    GradientTape t;
    t.watch(w);
    return t.gradient(mlp_loss(w, w2, x), w);
  };
  const double eps = 1e-5;
  Tensor fd = (grad_at(w1 + v * eps) - grad_at(w1 - v * eps)) / (2 * eps);
  check_close(hvp, fd.to_vector<double>(), 1e-6, 1e-8);
}

TEST_CASE("jacobian and batch_jacobian against closed forms") {
  Tensor x = tensor({1.0, 2.0, 3.0});
  {
    GradientTape tape;
    tape.watch(x);
    Tensor y = stack({x * x, sin(x)}, 0);  // [2,3]
    Tensor j = tape.jacobian(y, x);        // [2,3,3]
    REQUIRE(j.shape() == Shape{2, 3, 3});
    std::vector<double> expected(18, 0.0);
    for (int i = 0; i < 3; ++i) {
      expected[i * 3 + i] = 2 * (i + 1);
      expected[9 + i * 3 + i] = std::cos(i + 1.0);
    }
    check_close(j, expected, 1e-12, 1e-12);
  }
  {
    Tensor xb = tensor({{1.0, 2.0}, {3.0, 4.0}, {5.0, 6.0}});  // [3,2]
    Tensor w = tensor({{1.0, 0.5, 2.0}, {-1.0, 3.0, 0.0}});    // [2,3]
    GradientTape tape;
    tape.watch(xb);
    Tensor y = matmul(xb, w) * 2.0;  // [3,3]: dy[b,i]/dx[b,j] = 2 w[j,i]
    Tensor j = tape.batch_jacobian(y, xb);
    REQUIRE(j.shape() == Shape{3, 3, 2});
    std::vector<double> expected;
    const auto wv = w.to_vector<double>();
    for (int b = 0; b < 3; ++b)
      for (int i = 0; i < 3; ++i)
        for (int k = 0; k < 2; ++k)
          expected.push_back(2 * wv[k * 3 + i]);
    check_close(j, expected, 1e-12, 1e-12);
  }
}

TEST_CASE("memory: 10,000 eager steps with a tape each do not grow live memory") {
  random::seed(1);
  Variable w(random::normal({16, 8}, 0, 0.1), "w");
  Variable b(zeros({8}), "b");
  Tensor x = random::normal({32, 16});
  Tensor y = random::normal({32, 8});
  auto step = [&] {
    GradientTape tape;
    Tensor loss = mean(square(matmul(x, w) + b - y));
    auto g = tape.gradient(loss, {w, b});
    w.assign_sub(g[0] * 0.01f);
    b.assign_sub(g[1] * 0.01f);
    return loss;
  };
  for (int i = 0; i < 100; ++i)
    step();  // warm up caches
  const int64_t before = memory::cpu_stats().live_bytes;
  float first = step().item<float>(), last = first;
  for (int i = 0; i < 10000; ++i)
    last = step().item<float>();
  const int64_t after = memory::cpu_stats().live_bytes;
  CHECK(after == before);
  CHECK(last < first);
}

TEST_CASE("adam_update: one fused pass equals Adam's closed form") {
  // Hand-worked first step from zero moments: m = (1-b1) g, v = (1-b2) g^2.
  Tensor var = tensor({1.0, -2.0}), g = tensor({0.5, -4.0});
  Tensor m = zeros({2}, f64), v = zeros({2}, f64);
  const double lr = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  AdamUpdate u = adam_update(var, m, v, g, lr, b1, b2, eps);
  check_close(u.m, {0.05, -0.4}, 1e-15);
  check_close(u.v, {0.001 * 0.25, 0.001 * 16}, 1e-15);
  std::vector<double> expected;
  for (int i = 0; i < 2; ++i) {
    const double gi = i ? -4.0 : 0.5, xi = i ? -2.0 : 1.0;
    const double mi = 0.1 * gi, vi = 0.001 * gi * gi;
    expected.push_back(xi - lr * mi / (std::sqrt(vi) + eps));
  }
  check_close(u.var, expected, 1e-15);
  // Several steps in f32 against the same update written with public ops in f64.
  random::seed(5);
  Tensor x32 = random::normal({1000}), m32 = zeros({1000}), v32 = zeros({1000});
  Tensor x64 = x32.to(f64), m64 = zeros({1000}, f64), v64 = zeros({1000}, f64);
  for (int step = 0; step < 3; ++step) {
    Tensor grad = random::normal({1000});
    AdamUpdate a = adam_update(x32, m32, v32, grad, lr, b1, b2, eps);
    x32 = a.var, m32 = a.m, v32 = a.v;
    Tensor g64 = grad.to(f64);
    m64 = m64 * b1 + g64 * (1 - b1);
    v64 = v64 * b2 + square(g64) * (1 - b2);
    x64 = x64 - m64 * lr / (sqrt(v64) + eps);
  }
  check_close(x32, x64, 1e-5, 1e-6);
  check_error([&] { adam_update(var, m, ones({3}, f64), g, lr, b1, b2, eps); },
              {"adam_update", "v is f64[3]", "f64[2]"});
}
