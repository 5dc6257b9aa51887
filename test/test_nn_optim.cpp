// nn/optim: every optimizer against the Keras 3 update rule recomputed on host doubles, eager
// and traced; schedules against their formulas; clipping; a traced train step against the
// eager one; and the errors of apply_gradients.

#include <cmath>
#include <functional>
#include <vector>

#include <kiln/kiln.h>
#include <kiln/nn/optim.h>

#include "testing.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::check_error;

namespace {

using HostVec = std::vector<double>;
// One reference step for variable j at step t (counted from 1): updates w in place.
using Reference = std::function<void(size_t j, HostVec& w, const HostVec& g, int t)>;

enum class Mode { eager, traced };

// Deterministic gradients of mixed signs and magnitudes around 1.
HostVec grad_values(int step, size_t var, size_t n) {
  HostVec g(n);
  for (size_t i = 0; i < n; ++i)
    g[i] =
        std::sin(1.7 * static_cast<double>(i) + 0.9 * step + 2.1 * static_cast<double>(var) + 0.3) *
        (1 + 0.5 * static_cast<double>(i));
  return g;
}

// Runs `steps` apply_gradients on two f64 variables (eagerly, or through one traced function)
// and checks every value after every step against `ref`.
void check_against_reference(optim::Optimizer& opt, const Reference& ref, Mode mode,
                             int steps = 4) {
  std::vector<HostVec> host = {{0.5, -1.25, 2.0}, {0.75, -0.5}};
  std::vector<Variable> vars = {Variable(from_vector(host[0], {3}), "w"),
                                Variable(from_vector(host[1], {2}), "b")};
  opt.build(vars);
  auto traced =
      kiln::function([&](const std::vector<Tensor>& grads) { opt.apply_gradients(grads, vars); });
  for (int t = 1; t <= steps; ++t) {
    std::vector<Tensor> grads;
    for (size_t j = 0; j < vars.size(); ++j) {
      const HostVec g = grad_values(t, j, host[j].size());
      grads.push_back(from_vector(g, {static_cast<int64_t>(g.size())}));
      ref(j, host[j], g, t);
    }
    if (mode == Mode::eager)
      opt.apply_gradients(grads, vars);
    else
      traced(grads);
    INFO("step " << t << (mode == Mode::eager ? " eager" : " traced"));
    for (size_t j = 0; j < vars.size(); ++j)
      check_close(vars[j].value(), host[j], 1e-12, 1e-14);
  }
  CHECK(opt.iterations().value().item<int64_t>() == steps);
  if (mode == Mode::traced) CHECK(traced.tracing_count() == 1);
}

// Per-variable host state, zero-initialized on first use.
struct Slots {
  std::vector<HostVec> s;
  HostVec& at(size_t j, size_t n) {
    if (s.size() <= j) s.resize(j + 1);
    if (s[j].empty()) s[j].assign(n, 0.0);
    return s[j];
  }
};

Reference sgd_reference(double lr, double momentum, bool nesterov) {
  auto vel = std::make_shared<Slots>();
  return [=](size_t j, HostVec& w, const HostVec& g, int) {
    HostVec& v = vel->at(j, w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      if (momentum == 0) {
        w[i] -= lr * g[i];
        continue;
      }
      v[i] = momentum * v[i] - lr * g[i];
      w[i] += nesterov ? momentum * v[i] - lr * g[i] : v[i];
    }
  };
}

Reference adam_reference(double lr, double b1, double b2, double eps, double weight_decay = 0) {
  auto m = std::make_shared<Slots>(), v = std::make_shared<Slots>();
  return [=](size_t j, HostVec& w, const HostVec& g, int t) {
    HostVec& mj = m->at(j, w.size());
    HostVec& vj = v->at(j, w.size());
    const double alpha = lr * std::sqrt(1 - std::pow(b2, t)) / (1 - std::pow(b1, t));
    for (size_t i = 0; i < w.size(); ++i) {
      w[i] -= w[i] * weight_decay * lr;
      mj[i] += (g[i] - mj[i]) * (1 - b1);
      vj[i] += (g[i] * g[i] - vj[i]) * (1 - b2);
      w[i] -= alpha * mj[i] / (std::sqrt(vj[i]) + eps);
    }
  };
}

Reference rmsprop_reference(double lr, double rho, double momentum, double eps, bool centered) {
  auto avg = std::make_shared<Slots>(), mom = std::make_shared<Slots>();
  auto mg = std::make_shared<Slots>();
  return [=](size_t j, HostVec& w, const HostVec& g, int) {
    HostVec& a = avg->at(j, w.size());
    HostVec& mo = mom->at(j, w.size());
    HostVec& mgj = mg->at(j, w.size());
    for (size_t i = 0; i < w.size(); ++i) {
      a[i] = rho * a[i] + (1 - rho) * g[i] * g[i];
      double denominator = a[i] + eps;
      if (centered) {
        mgj[i] = rho * mgj[i] + (1 - rho) * g[i];
        denominator = a[i] - mgj[i] * mgj[i] + eps;
      }
      const double increment = lr * g[i] / std::sqrt(denominator);
      if (momentum > 0) {
        mo[i] = momentum * mo[i] + increment;
        w[i] -= mo[i];
      } else {
        w[i] -= increment;
      }
    }
  };
}

std::vector<std::string> names(const std::vector<Variable>& vars) {
  std::vector<std::string> out;
  for (const Variable& v : vars)
    out.push_back(v.name());
  return out;
}

}  // namespace

// Rates are powers of two, exact in the f32 the learning rate is carried in.
TEST_CASE("SGD: plain, momentum and nesterov against the host recomputation") {
  for (Mode mode : {Mode::eager, Mode::traced}) {
    optim::SGD plain(0.125);
    check_against_reference(plain, sgd_reference(0.125, 0, false), mode);
    optim::SGD momentum(0.125, 0.9);
    check_against_reference(momentum, sgd_reference(0.125, 0.9, false), mode);
    optim::SGD nesterov(0.0625, 0.8, true);
    check_against_reference(nesterov, sgd_reference(0.0625, 0.8, true), mode);
  }
}

TEST_CASE("Adam and AdamW: bias-corrected steps against the host recomputation") {
  for (Mode mode : {Mode::eager, Mode::traced}) {
    optim::Adam adam(0.125);
    check_against_reference(adam, adam_reference(0.125, 0.9, 0.999, 1e-7), mode);
    optim::Adam tuned(0.25, 0.5, 0.75, 1e-3);
    check_against_reference(tuned, adam_reference(0.25, 0.5, 0.75, 1e-3), mode);
    optim::AdamW adamw(0.125, 0.25);
    check_against_reference(adamw, adam_reference(0.125, 0.9, 0.999, 1e-7, 0.25), mode);
  }
}

TEST_CASE("RMSprop: plain, momentum and centered against the host recomputation") {
  for (Mode mode : {Mode::eager, Mode::traced}) {
    optim::RMSprop plain(0.125);
    check_against_reference(plain, rmsprop_reference(0.125, 0.9, 0, 1e-7, false), mode);
    optim::RMSprop momentum(0.0625, 0.8, 0.5);
    check_against_reference(momentum, rmsprop_reference(0.0625, 0.8, 0.5, 1e-7, false), mode);
    optim::RMSprop centered(0.0625, 0.7, 0.25, 1e-6, true);
    check_against_reference(centered, rmsprop_reference(0.0625, 0.7, 0.25, 1e-6, true), mode);
  }
}

TEST_CASE("Adam's first step moves every weight by about lr against its gradient's sign") {
  Variable w(tensor({1.0, -2.0, 3.0, 0.0}), "w");
  const std::vector<double> g = {0.5, -2.0, 1e-2, 30.0};
  optim::Adam adam(0.01);
  adam.apply_gradients({from_vector(g, {4})}, {w});
  const std::vector<double> after = w.value().to_vector<double>();
  const std::vector<double> before = {1.0, -2.0, 3.0, 0.0};
  for (size_t i = 0; i < g.size(); ++i) {
    INFO("weight " << i);
    // |step| = lr |g| sqrt(1-b2) / (|g| sqrt(1-b2) + eps): eps shows at 3e-4 for g = 1e-2.
    CHECK(after[i] - before[i] == Approx(-0.01 * (g[i] > 0 ? 1 : -1)).epsilon(5e-4));
  }
}

TEST_CASE("Adam: the eager fused update and the traced elementwise one agree") {
  for (DType dtype : {f64, f32}) {
    random::seed(13);
    Tensor init = random::normal({5, 4}, 0, 1, dtype);
    Variable eager_w(init, "w"), traced_w(init, "w");
    optim::Adam eager_opt(optim::ExponentialDecay(0.01, 2, 0.5)),
        traced_opt(optim::ExponentialDecay(0.01, 2, 0.5));
    traced_opt.build({traced_w});
    auto traced =
        kiln::function([&](const Tensor& g) { traced_opt.apply_gradients({g}, {traced_w}); });
    // f32: m = m + (g - m)(1 - b1) and b1 m + (1 - b1) g round differently, and m may be a
    // small difference of larger terms, so the absolute tolerance is that of m's inputs.
    const double rtol = dtype == f64 ? 1e-13 : 2e-6, atol = dtype == f64 ? 1e-15 : 1e-7;
    for (int step = 0; step < 5; ++step) {
      Tensor g = random::normal({5, 4}, 0, 1, dtype);
      eager_opt.apply_gradients({g}, {eager_w});
      traced(g);
      check_close(traced_w.value(), eager_w.value(), rtol, atol);
      const auto ev = eager_opt.variables(), tv = traced_opt.variables();
      REQUIRE(ev.size() == tv.size());
      for (size_t i = 0; i < ev.size(); ++i)
        check_close(tv[i].value(), ev[i].value(), rtol, atol);
    }
    CHECK(traced.tracing_count() == 1);
  }
}

TEST_CASE("schedules: ExponentialDecay and CosineDecay at several steps") {
  auto value_at = [](const optim::LearningRateSchedule& s, int64_t step) {
    Tensor lr = s(scalar_tensor(step, i64));
    CHECK(lr.dtype() == f32);
    CHECK(lr.rank() == 0);
    return lr.item<double>();
  };
  optim::ExponentialDecay smooth(0.1, 10, 0.5);
  optim::ExponentialDecay stairs(0.1, 10, 0.5, true);
  const std::vector<std::pair<int64_t, double>> smooth_expected = {
      {0, 0.1}, {5, 0.1 * std::sqrt(0.5)}, {10, 0.05}, {25, 0.1 * std::pow(0.5, 2.5)}};
  for (auto [step, expected] : smooth_expected) {
    CHECK(smooth.at(step) == Approx(expected).epsilon(1e-14));
    CHECK(value_at(smooth, step) == Approx(expected).epsilon(1e-7));
  }
  const std::vector<std::pair<int64_t, double>> stairs_expected = {
      {0, 0.1}, {9, 0.1}, {10, 0.05}, {25, 0.025}, {39, 0.0125}};
  for (auto [step, expected] : stairs_expected) {
    CHECK(stairs.at(step) == Approx(expected).epsilon(1e-14));
    CHECK(value_at(stairs, step) == Approx(expected).epsilon(1e-7));
  }
  optim::CosineDecay cosine(0.2, 100, 0.1);
  // 0.2 * (0.9 * 0.5 * (1 + cos(pi * s / 100)) + 0.1), the step clamped to 100.
  const std::vector<std::pair<int64_t, double>> cosine_expected = {
      {0, 0.2},
      {25, 0.2 * (0.45 * (1 + std::sqrt(0.5)) + 0.1)},
      {50, 0.11},
      {100, 0.02},
      {150, 0.02}};
  for (auto [step, expected] : cosine_expected) {
    CHECK(cosine.at(step) == Approx(expected).epsilon(1e-14));
    CHECK(value_at(cosine, step) == Approx(expected).epsilon(1e-7));
  }
  optim::CosineDecay to_zero(1.0, 4);
  CHECK(to_zero.at(2) == Approx(0.5).epsilon(1e-15));
  CHECK(to_zero.at(4) == Approx(0.0).margin(1e-15));
  // A LearningRate holds a constant or a schedule.
  optim::LearningRate constant(0.3), scheduled(stairs);
  CHECK(constant.at(1000) == 0.3);
  CHECK(constant(scalar_tensor(5, i64)).item<float>() == 0.3f);
  CHECK(scheduled.at(25) == Approx(0.025).epsilon(1e-14));
  check_error([] { optim::ExponentialDecay(0.1, 0, 0.5); }, {"ExponentialDecay", "decay_steps"});
  check_error([] { optim::CosineDecay(0.1, -3); }, {"CosineDecay", "decay_steps", "-3"});
}

TEST_CASE("an optimizer reads its schedule at the current iteration") {
  Variable w(tensor({1.0, 2.0}), "w");
  optim::SGD sgd(optim::ExponentialDecay(0.5, 2, 0.5, true));
  const std::vector<double> rates = {0.5, 0.5, 0.25, 0.25, 0.125};
  std::vector<double> host = {1.0, 2.0};
  for (double rate : rates) {
    CHECK(sgd.learning_rate().item<double>() == rate);
    sgd.apply_gradients({tensor({1.0, -3.0})}, {w});
    host[0] -= rate * 1.0;
    host[1] -= rate * -3.0;
    check_close(w.value(), host, 1e-15);
  }
  CHECK(sgd.iterations().value().item<int64_t>() == 5);
}

TEST_CASE("clip_by_global_norm rescales to the clip norm, Keras's way") {
  Tensor a = tensor({3.f, 4.f}), b = tensor({12.f});
  Tensor norm;
  auto clipped = optim::clip_by_global_norm({a, Tensor(), b}, 6.5, &norm);
  REQUIRE(clipped.size() == 3);
  check_close(norm, {13.0}, 1e-7);
  check_close(clipped[0], {1.5, 2.0}, 1e-6);
  CHECK(!clipped[1].defined());  // undefined gradients pass through
  check_close(clipped[2], {6.0}, 1e-6);
  // Under the clip norm nothing changes; a zero norm gives no NaN.
  auto same = optim::clip_by_global_norm({a, b}, 20);
  check_close(same[0], {3, 4}, 1e-7);
  check_close(same[1], {12}, 1e-7);
  auto zero = optim::clip_by_global_norm({zeros({3})}, 1.0, &norm);
  check_close(zero[0], {0, 0, 0});
  check_close(norm, {0.0});
  // A non-finite gradient makes every gradient NaN (Keras's (norm - norm) term).
  auto bad = optim::clip_by_global_norm({tensor({INFINITY, 1.f}), tensor({1.f})}, 1.0);
  CHECK(std::isnan(bad[1].item<float>()));
  // Mixed dtypes: the norm in f64, each gradient keeps its dtype.
  auto mixed = optim::clip_by_global_norm({a, tensor({12.0})}, 6.5, &norm);
  CHECK(norm.dtype() == f64);
  CHECK(mixed[0].dtype() == f32);
  check_close(mixed[1], {6.0}, 1e-15);
  check_error([&] { optim::clip_by_global_norm({a}, 0); }, {"clip_by_global_norm", "positive"});
  check_error(
      [&] {
        optim::clip_by_global_norm({tensor({1, 2})}, 1);
      },
      {"clip_by_global_norm", "i32[2]"});

  // global_clipnorm clips before the step: SGD(lr 1) moves by the clipped gradient.
  Variable w(tensor({0.0, 0.0}), "w"), v(tensor({1.0}), "v");
  optim::SGD sgd(1.0);
  sgd.global_clipnorm = 2.5;
  sgd.apply_gradients({tensor({3.0, 4.0}), tensor({0.0})}, {w, v});
  check_close(w.value(), {-1.5, -2.0}, 1e-15);
  check_close(v.value(), {1.0});
}

TEST_CASE("a traced train step with a GradientTape equals the eager one, step for step") {
  random::seed(7);
  Tensor x = random::normal({8, 3}), y = random::normal({8, 2});
  Tensor w0 = random::normal({3, 2}), b0 = zeros({2});
  Variable w_t(w0, "w"), b_t(b0, "b"), w_e(w0, "w"), b_e(b0, "b");
  optim::Adam opt_t(optim::ExponentialDecay(0.05, 2, 0.7)),
      opt_e(optim::ExponentialDecay(0.05, 2, 0.7));
  opt_t.global_clipnorm = opt_e.global_clipnorm = 1.0;
  opt_t.build({w_t, b_t});
  auto loss_of = [](const Tensor& xb, const Tensor& yb, const Variable& w, const Variable& b) {
    return mean(square(matmul(xb, w) + b - yb));
  };
  auto step = kiln::function([&](const Tensor& xb, const Tensor& yb) {
    GradientTape tape;
    Tensor loss = loss_of(xb, yb, w_t, b_t);
    opt_t.apply_gradients(tape.gradient(loss, {w_t, b_t}), {w_t, b_t});
    return loss;
  });
  float first = 0, last = 0;
  for (int i = 0; i < 6; ++i) {
    const float traced_loss = step(x, y).item<float>();
    GradientTape tape;
    Tensor loss = loss_of(x, y, w_e, b_e);
    opt_e.apply_gradients(tape.gradient(loss, {w_e, b_e}), {w_e, b_e});
    CHECK(traced_loss == Approx(loss.item<float>()).epsilon(1e-5));
    check_close(w_t.value(), w_e.value(), 1e-5, 1e-6);
    check_close(b_t.value(), b_e.value(), 1e-5, 1e-6);
    const auto tv = opt_t.variables(), ev = opt_e.variables();
    REQUIRE(tv.size() == ev.size());
    for (size_t k = 0; k < tv.size(); ++k)
      check_close(tv[k].value(), ev[k].value(), 1e-4, 1e-7);
    if (i == 0) first = traced_loss;
    last = traced_loss;
  }
  CHECK(step.tracing_count() == 1);  // the decaying rate did not retrace
  CHECK(opt_t.iterations().value().item<int64_t>() == 6);
  CHECK(last < first);
}

TEST_CASE("optimizer state: names, order, and which slots exist") {
  Variable w(zeros({2, 3}), "dense/kernel"), b(zeros({3}), "dense/bias");
  optim::Adam adam;
  CHECK(!adam.built());
  adam.build({w, b});
  CHECK(adam.built());
  CHECK(names(adam.variables()) ==
        std::vector<std::string>{"adam/iterations", "adam/dense/kernel/m", "adam/dense/kernel/v",
                                 "adam/dense/bias/m", "adam/dense/bias/v"});
  for (const Variable& v : adam.variables())
    CHECK(!v.trainable());
  CHECK(adam.iterations().dtype() == i64);
  CHECK(adam.variables()[1].shape() == Shape{2, 3});
  adam.build({w, b});  // the same list again: nothing new
  CHECK(adam.variables().size() == 5);

  optim::SGD plain;
  plain.build({w});
  CHECK(names(plain.variables()) == std::vector<std::string>{"SGD/iterations"});
  optim::SGD momentum(0.01, 0.9);
  momentum.build({w});
  CHECK(names(momentum.variables()) ==
        std::vector<std::string>{"SGD/iterations", "SGD/dense/kernel/velocity"});
  optim::RMSprop rms(1e-3, 0.9, 0.5, 1e-7, true);
  rms.build({b});
  CHECK(names(rms.variables()) == std::vector<std::string>{"rmsprop/iterations",
                                                           "rmsprop/dense/bias/velocity",
                                                           "rmsprop/dense/bias/momentum",
                                                           "rmsprop/dense/bias/average_gradient"});
  optim::AdamW adamw;
  adamw.build({b});
  CHECK(names(adamw.variables())[0] == "adamw/iterations");
}

TEST_CASE("apply_gradients: undefined gradients are skipped, bad input is an error") {
  Variable w(tensor({1.0, 2.0, 3.0}), "w"), b(tensor({5.0, 6.0}), "b");
  optim::Adam adam(0.1);
  adam.apply_gradients({Tensor(), tensor({1.0, -1.0})}, {w, b});
  check_close(w.value(), {1, 2, 3});  // no gradient: untouched, slots stay zero
  check_close(adam.variables()[1].value(), {0, 0, 0});
  check_close(b.value(), {4.9, 6.1}, 1e-6);
  CHECK(adam.iterations().value().item<int64_t>() == 1);

  check_error(
      [&] {
        adam.apply_gradients({tensor({1.0, 1.0, 1.0})}, {w, b});
      },
      {"adam", "1 gradients", "2 variables"});
  check_error(
      [&] {
        adam.apply_gradients({tensor({1.0, 1.0}), tensor({1.0, 1.0})}, {w, b});
      },
      {"adam", "'w'", "f64[2]", "f64[3]"});
  check_error(
      [&] {
        adam.apply_gradients({ones({3}), tensor({1.0, 1.0})}, {w, b});
      },
      {"adam", "'w'", "f32[3]", "f64[3]"});
  check_error(
      [&] {
        adam.apply_gradients({Tensor(), Tensor()}, {w, b});
      },
      {"adam", "no gradients", "w", "b"});
  Variable other(tensor({0.0}), "other");
  check_error([&] { adam.apply_gradients({tensor({1.0})}, {other}); },
              {"adam", "built for", "[w, b]", "[other]"});
  check_error(
      [&] {
        adam.apply_gradients({tensor({1.0, 1.0}), tensor({1.0, 1.0, 1.0})}, {b, w});
      },
      {"adam", "built for", "[w, b]", "[b, w]"});
  CHECK(adam.iterations().value().item<int64_t>() == 1);  // failed calls did not count

  optim::SGD sgd;
  Variable counter(tensor({1, 2}), "counter");
  check_error([&] { sgd.build({counter}); }, {"SGD", "'counter'", "i32[2]", "floating"});
  check_error([&] { sgd.build({w, w}); }, {"SGD", "'w'", "twice"});
  check_error([&] { sgd.build({}); }, {"SGD", "at least one"});
  CHECK(!sgd.built());
  check_error([] { optim::Adam(1e-3, 1.0); }, {"adam", "beta_1"});
  check_error([] { optim::SGD(0.1, -0.5); }, {"SGD", "momentum"});
  check_error([] { optim::RMSprop(-1.0); }, {"rmsprop", "learning rate"});
}
