// Gradients through traced code: cond and while_loop differentiated by a tape inside the
// traced function, and calls of a traced function differentiated by a tape outside it (its
// traced, cached gradient function). Checked against eager execution and central differences.
#include "testing.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::check_error;

namespace {

Tensor vec(const std::vector<double>& v) {
  return from_vector(v, Shape{static_cast<int64_t>(v.size())});
}

// d/dx sum(f(x)) by central differences, in f64.
std::vector<double> numeric_grad(const std::function<Tensor(const Tensor&)>& f,
                                 const std::vector<double>& x0) {
  return testing::numeric_gradient(
      [&](const std::vector<double>& x) { return sum(f(vec(x))).item<double>(); }, x0);
}

// A scalar-input while loop: v <- sin(v) * c + v, as long as the counter is below n.
std::vector<Tensor> sin_loop(const Tensor& v0, const Tensor& c, const Tensor& n) {
  return while_loop([&](const std::vector<Tensor>& s) { return s[1] < n; },
                    [&](const std::vector<Tensor>& s) {
                      return std::vector<Tensor>{sin(s[0]) * c + s[0], s[1] + 1};
                    },
                    {v0, tensor(int64_t{0})});
}

}  // namespace

TEST_CASE("cond: a tape inside the trace differentiates the branch that ran") {
  Variable w(tensor({2.0, -1.0}), "w");
  // The captured tensor and the variable get gradients; each branch uses them differently.
  auto traced = kiln::function([&](const Tensor& x, const Tensor& flag) {
    GradientTape tape({.persistent = true});
    tape.watch(x);
    Tensor sq = x * x;
    Tensor r = kiln::cond(
        flag > 0.0, [&] { return sq * w.value() + exp(x); }, [&] { return sin(x) - w.value(); });
    Tensor loss = sum(r * r);
    return std::make_tuple(loss, tape.gradient(loss, {x})[0], tape.gradient(loss, w));
  });
  const Tensor x = tensor({0.3, -0.7});
  for (double flag : {1.0, -1.0}) {
    auto [l0, gx0, gw0] = traced(x, tensor(flag));
    // Eager reference: the same step without tracing (C++ control flow under the tape).
    GradientTape tape({.persistent = true});
    tape.watch(x);
    Tensor sq = x * x;
    Tensor r = flag > 0 ? sq * w.value() + exp(x) : sin(x) - w.value();
    Tensor loss = sum(r * r);
    check_close(l0, loss, 1e-12);
    check_close(gx0, tape.gradient(loss, {x})[0], 1e-12);
    check_close(gw0, tape.gradient(loss, w), 1e-12);
  }
  CHECK(traced.tracing_count() == 1);
}

TEST_CASE("while_loop: a tape inside the trace runs the reverse loop for the trip count") {
  auto traced = kiln::function([](const Tensor& v0, const Tensor& c, const Tensor& n) {
    GradientTape tape;
    tape.watch(v0);
    tape.watch(c);
    Tensor y = sum(sin_loop(v0, c, n)[0]);
    std::vector<Tensor> g = tape.gradient(y, {v0, c});
    return std::vector<Tensor>{y, g[0], g[1]};
  });
  const std::vector<double> v0 = {0.4, 1.3, -0.8};
  const Tensor c = tensor(0.7);
  for (int64_t n : {0, 1, 4}) {
    auto out = traced(vec(v0), c, tensor(n));
    // Against eager execution of the same loop, and against central differences.
    GradientTape tape({.persistent = true});
    Tensor x = vec(v0);
    tape.watch(x);
    tape.watch(c);
    Tensor y = sum(sin_loop(x, c, tensor(n))[0]);
    check_close(out[0], y, 1e-12);
    check_close(out[1], tape.gradient(y, x), 1e-10);
    // Zero trips: c is unused eagerly; the traced loop reports a zero gradient.
    check_close(out[2], tape.gradient(y, {c}, {}, Unconnected::zero)[0], 1e-10);
    auto f = [&](const Tensor& v) { return sin_loop(v, c, tensor(n))[0]; };
    check_close(out[1], numeric_grad(f, v0), 1e-6);
    auto fc = [&](const Tensor& cc) { return sin_loop(vec(v0), cc, tensor(n))[0]; };
    check_close(out[2], numeric_grad(fc, {0.7}), 1e-6);
  }
  CHECK(traced.tracing_count() == 1);  // one trace serves every trip count
}

TEST_CASE("control flow gradients: nested regions, variables and integer loop state") {
  Variable scale(tensor(1.5), "scale");
  // while over a cond: v <- v * scale if sum(v) < 10 else v - 1, for three trips.
  auto body = [&](const Tensor& v0) {
    return while_loop([](const std::vector<Tensor>& s) { return s[1] < 3; },
                      [&](const std::vector<Tensor>& s) {
                        Tensor next = kiln::cond(
                            sum(s[0]) < 10.0, [&] { return s[0] * scale.value(); },
                            [&] { return s[0] - 1.0; });
                        return std::vector<Tensor>{next, s[1] + 1};
                      },
                      {v0, tensor(int64_t{0})})[0];
  };
  auto traced = kiln::function([&](const Tensor& v0) {
    GradientTape tape({.persistent = true});
    tape.watch(v0);
    Tensor y = sum(body(v0) * body(v0));
    std::vector<Tensor> g = tape.gradient(y, {v0});
    return std::vector<Tensor>{g[0], tape.gradient(y, scale)};
  });
  for (const std::vector<double>& v : {std::vector<double>{1.0, 2.0}, {3.0, 4.0}}) {
    auto out = traced(vec(v));
    GradientTape tape({.persistent = true});
    Tensor x = vec(v);
    tape.watch(x);
    Tensor y = sum(body(x) * body(x));
    check_close(out[0], tape.gradient(y, x), 1e-12);
    check_close(out[1], tape.gradient(y, scale), 1e-12);
    check_close(out[0], numeric_grad([&](const Tensor& t) { return body(t) * body(t); }, v), 1e-6);
  }
}

TEST_CASE("cond: second order through nested tapes inside the trace") {
  // d2/dx2 of x^3 (then) or sin(x) (else): 6x or -sin(x).
  auto traced = kiln::function([](const Tensor& x) {
    GradientTape outer;
    outer.watch(x);
    GradientTape inner;
    inner.watch(x);
    Tensor y = kiln::cond(
        sum(x) > 0.0, [&] { return x * x * x; }, [&] { return sin(x); });
    Tensor dy = inner.gradient(sum(y), {x})[0];
    return outer.gradient(sum(dy), {x})[0];
  });
  check_close(traced(tensor({0.5, 2.0})), {3.0, 12.0}, 1e-12);
  check_close(traced(tensor({-0.5, -2.0})), {std::sin(0.5), std::sin(2.0)}, 1e-12);
}

TEST_CASE("control flow gradients: what cannot be re-run is refused when differentiated") {
  auto f = kiln::function([](const Tensor& x) {
    GradientTape tape;
    tape.watch(x);
    Tensor y = kiln::cond(
        sum(x) > 0.f, [&] { return dropout(x, 0.5, true); }, [&] { return x; });
    return tape.gradient(sum(y), {x})[0];
  });
  check_error([&] { f(tensor({1.f, 2.f})); }, {"cond", "random", "not supported"});
  // Without a gradient the same function traces and runs.
  auto g = kiln::function([](const Tensor& x) {
    return kiln::cond(
        sum(x) > 0.f, [&] { return dropout(x, 0.5, true); }, [&] { return x; });
  });
  CHECK(g(tensor({1.f, 2.f})).shape() == Shape{2});
}

TEST_CASE("a tape outside a call differentiates through the cached gradient function") {
  Variable w(from_vector(std::vector<double>{0.5, -1.0, 2.0, 0.25, 1.5, -0.75}, {3, 2}), "w");
  auto f = kiln::function([&](const Tensor& x, const Tensor& b) {
    Tensor h = tanh(matmul(x, w.value()) + b);
    return std::make_tuple(h * 2.0, sum(h * h));
  });
  auto eager = [&](const Tensor& x, const Tensor& b) {
    Tensor h = tanh(matmul(x, w.value()) + b);
    return sum(h * 2.0) + sum(h * h) * 3.0;
  };
  const Tensor x = from_vector(std::vector<double>{0.1, -0.2, 0.3, 0.7, 0.0, -0.4}, {2, 3});
  const Tensor b = tensor({0.05, -0.1});
  for (int call = 0; call < 2; ++call) {
    GradientTape tape({.persistent = true});
    tape.watch(x);
    tape.watch(b);
    auto [y, s] = f(x, b);
    CHECK(tape.recorded_ops() == 1);  // one entry for the whole call
    Tensor loss = sum(y) + s * 3.0;
    GradientTape ref({.persistent = true});
    ref.watch(x);
    ref.watch(b);
    Tensor expected = eager(x, b);
    check_close(loss, expected, 1e-12);
    check_close(tape.gradient(loss, x), ref.gradient(expected, x), 1e-12);
    check_close(tape.gradient(loss, b), ref.gradient(expected, b), 1e-12);
    check_close(tape.gradient(loss, w), ref.gradient(expected, w), 1e-12);
  }
  const ConcreteFunction cf = f.get_concrete_function(x, b);
  const ConcreteFunction grad = cf.gradient_function();
  CHECK(&grad.graph() == &cf.gradient_function().graph());  // traced once, then cached
  CHECK(grad.graph().name == "function/grad");
  CHECK(f.tracing_count() == 1);
}

TEST_CASE("a tape outside a call: second order, and random draws record primitives") {
  auto cube = kiln::function([](const Tensor& x) { return x * x * x; });
  const Tensor x = tensor({0.5, -2.0});
  GradientTape outer;
  outer.watch(x);
  GradientTape inner;
  inner.watch(x);
  Tensor dy = inner.gradient(sum(cube(x)), x);  // 3x^2, through the gradient function
  check_close(dy, {0.75, 12.0}, 1e-12);
  check_close(outer.gradient(sum(dy), x), {3.0, -12.0}, 1e-12);  // 6x, through its gradient

  // A draw would differ on a re-run: the tape records the primitives of the call instead.
  auto drop = kiln::function([](const Tensor& v) { return dropout(v, 0.5, true) * 3.0; });
  const Tensor v = tensor({1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0});
  GradientTape tape;
  tape.watch(v);
  Tensor y = drop(v);
  CHECK(tape.recorded_ops() > 1);
  // d y_i / d v_i is 6 where the element was kept (scaled by 1 / (1 - 0.5)) and 0 where not.
  const std::vector<double> kept = y.to_vector<double>();
  const std::vector<double> g = tape.gradient(sum(y), v).to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i)
    CHECK(g[i] == (kept[i] != 0.0 ? 6.0 : 0.0));
}
