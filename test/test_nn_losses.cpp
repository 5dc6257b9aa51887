// nn/losses and nn/metrics: hand-worked values, f64 finite-difference gradients, extreme
// logits, shape and dtype errors, and metrics updated eagerly and inside traced functions.

#include <cmath>
#include <vector>

#include <kiln/kiln.h>
#include <kiln/nn/losses.h>
#include <kiln/nn/metrics.h>

#include "testing.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::check_error;

namespace {

// tape.gradient of the scalar f(x) against central differences, in f64.
template <class F>
void check_gradient(F f, const Tensor& x0, double rtol = 1e-6, double atol = 1e-8) {
  REQUIRE(x0.dtype() == f64);
  Tensor g;
  {
    Tensor x = x0;
    GradientTape tape;
    tape.watch(x);
    Tensor y = f(x);
    REQUIRE(y.numel() == 1);
    g = tape.gradient(y, x);
  }
  REQUIRE(g.defined());
  const std::vector<double> numeric = testing::numeric_gradient(
      [&](const std::vector<double>& xs) {
        return f(from_vector(xs, x0.shape())).template item<double>();
      },
      x0.to_vector<double>());
  check_close(g, numeric, rtol, atol);
}

double lse(const std::vector<double>& row) {
  double m = row[0];
  for (double v : row)
    m = std::max(m, v);
  double s = 0;
  for (double v : row)
    s += std::exp(v - m);
  return m + std::log(s);
}

bool all_finite(const Tensor& t) {
  for (double v : t.to_vector<double>())
    if (!std::isfinite(v)) return false;
  return true;
}

}  // namespace

TEST_CASE("sparse_categorical_crossentropy: probabilities are normalized, clipped, logged") {
  Tensor p = tensor({{0.1, 0.6, 0.3}, {0.2, 0.2, 0.6}});
  Tensor labels = tensor({int64_t{1}, int64_t{2}});
  check_close(nn::sparse_categorical_crossentropy(labels, p), {-std::log(0.6), -std::log(0.6)},
              1e-12);
  // Unnormalized scores are divided by their sum first (Keras's JAX/torch backends).
  check_close(nn::sparse_categorical_crossentropy(tensor({int64_t{1}}), tensor({{1.0, 2.0, 1.0}})),
              {std::log(2.0)}, 1e-12);
  // A zero probability is clipped to eps = 1e-7, a one to 1 - eps.
  Tensor onehot = tensor({{0.0, 1.0, 0.0}, {0.0, 1.0, 0.0}});
  check_close(nn::sparse_categorical_crossentropy(tensor({int64_t{0}, int64_t{1}}), onehot),
              {-std::log(1e-7), -std::log(1 - 1e-7)}, 1e-9);
  // u8, i32, i64 and [B, 1] labels agree.
  const std::vector<double> expected = {-std::log(0.6), -std::log(0.6)};
  check_close(nn::sparse_categorical_crossentropy(tensor({uint8_t{1}, uint8_t{2}}), p), expected,
              1e-12);
  check_close(nn::sparse_categorical_crossentropy(tensor({1, 2}), p), expected, 1e-12);
  Tensor column = nn::sparse_categorical_crossentropy(tensor({{1}, {2}}), p);
  CHECK(column.shape() == Shape{2});
  check_close(column, expected, 1e-12);
  // f32 matches f64 to f32 precision.
  check_close(nn::sparse_categorical_crossentropy(labels, p.to(f32)), expected, 1e-6);
}

TEST_CASE("sparse_categorical_crossentropy: from logits is logsumexp minus the label's logit") {
  const std::vector<std::vector<double>> rows = {{1, 2, 3}, {0, -1, 5}};
  Tensor x = tensor({{1.0, 2.0, 3.0}, {0.0, -1.0, 5.0}});
  Tensor labels = tensor({0, 2});
  check_close(nn::sparse_categorical_crossentropy(labels, x, true),
              {lse(rows[0]) - 1, lse(rows[1]) - 5}, 1e-12);
  // The same as the probability form on softmax(x) (no probability is near the clip).
  check_close(nn::sparse_categorical_crossentropy(labels, x, true),
              nn::sparse_categorical_crossentropy(labels, softmax(x)), 1e-10);
}

TEST_CASE("Loss reductions: none, sum, sum_over_batch_size") {
  Tensor p = tensor({{0.1, 0.6, 0.3}, {0.2, 0.2, 0.6}, {0.5, 0.25, 0.25}});
  Tensor labels = tensor({1, 2, 0});
  const double a = -std::log(0.6), b = -std::log(0.5);
  nn::SparseCategoricalCrossentropy none(false, nn::Reduction::none);
  Tensor per = none(labels, p);
  CHECK(per.shape() == Shape{3});
  check_close(per, {a, a, b}, 1e-12);
  nn::SparseCategoricalCrossentropy total(false, nn::Reduction::sum);
  check_close(total(labels, p), {2 * a + b}, 1e-12);
  nn::SparseCategoricalCrossentropy mean_loss;  // Keras's default reduction
  CHECK(mean_loss.reduction() == nn::Reduction::sum_over_batch_size);
  CHECK(mean_loss.name() == "sparse_categorical_crossentropy");
  Tensor m = mean_loss(labels, p);
  CHECK(m.rank() == 0);
  check_close(m, {(2 * a + b) / 3}, 1e-12);
  // Extra batch dims: the mean is over every per-example value.
  Tensor p3 =
      reshape(tensor({0.1, 0.6, 0.3, 0.2, 0.2, 0.6, 0.5, 0.25, 0.25, 0.5, 0.25, 0.25}), {2, 2, 3});
  Tensor l3 = tensor({{1, 2}, {0, 0}});
  check_close(mean_loss(l3, p3), {(2 * a + 2 * b) / 4}, 1e-12);
  // An empty batch reduces to 0 (divide_no_nan), not NaN.
  nn::MeanSquaredError mse;
  check_close(mse(zeros({0, 2}, f64), zeros({0, 2}, f64)), {0.0});
}

TEST_CASE("with_logits: the from_logits twin of a probability loss") {
  nn::SparseCategoricalCrossentropy scce(false, nn::Reduction::sum);
  auto twin = scce.with_logits();
  REQUIRE(twin != nullptr);
  CHECK(twin->reduction() == nn::Reduction::sum);
  auto* sparse = dynamic_cast<nn::SparseCategoricalCrossentropy*>(twin.get());
  REQUIRE(sparse != nullptr);
  CHECK(sparse->from_logits());
  Tensor x = tensor({{0.5, -1.0, 2.0}, {3.0, 0.0, -2.0}});
  Tensor labels = tensor({2, 1});
  check_close((*twin)(labels, x), scce(labels, softmax(x)), 1e-10);
  CHECK(twin->with_logits() == nullptr);  // already takes logits

  nn::CategoricalCrossentropy cce;
  auto cce_twin = cce.with_logits();
  REQUIRE(cce_twin != nullptr);
  Tensor y = tensor({{0.0, 0.0, 1.0}, {0.2, 0.8, 0.0}});
  check_close((*cce_twin)(y, x), cce(y, softmax(x)), 1e-10);
  CHECK(nn::MeanSquaredError().with_logits() == nullptr);
  CHECK(nn::BinaryCrossentropy().with_logits() == nullptr);
}

TEST_CASE("categorical_crossentropy: one-hot and soft labels, probabilities and logits") {
  Tensor y = tensor({{0.0, 1.0, 0.0}, {0.5, 0.5, 0.0}});
  Tensor p = tensor({{0.2, 0.5, 0.3}, {0.25, 0.25, 0.5}});
  check_close(nn::categorical_crossentropy(y, p), {-std::log(0.5), std::log(4.0)}, 1e-12);
  // Unnormalized rows are divided by their sum.
  check_close(nn::categorical_crossentropy(y, mul(p, 4.0)), {-std::log(0.5), std::log(4.0)}, 1e-12);
  const std::vector<std::vector<double>> rows = {{1, 2, 3}, {0, -1, 5}};
  Tensor x = tensor({{1.0, 2.0, 3.0}, {0.0, -1.0, 5.0}});
  // -sum(y * log_softmax(x)) = lse(x) - sum(y * x) for rows of y summing to 1.
  check_close(nn::categorical_crossentropy(y, x, true),
              {lse(rows[0]) - 2, lse(rows[1]) - 0.5 * (0 - 1)}, 1e-12);
  // Integer one-hot labels are cast to y_pred's dtype.
  check_close(nn::categorical_crossentropy(tensor({{0, 1, 0}}), tensor({{0.2, 0.5, 0.3}})),
              {-std::log(0.5)}, 1e-12);
}

TEST_CASE("mean_squared_error: mean over the last axis, [B] labels meet [B, 1] predictions") {
  Tensor y = tensor({{1.0, 2.0}, {3.0, 4.0}});
  check_close(nn::mean_squared_error(y, ones({2, 2}, f64)), {0.5, 6.5}, 1e-12);
  Tensor per = nn::mean_squared_error(tensor({1, 2, 3}), tensor({{2.0}, {2.0}, {2.0}}));
  CHECK(per.shape() == Shape{3});
  check_close(per, {1, 0, 1}, 1e-12);
  check_close(nn::MeanSquaredError()(y, ones({2, 2}, f64)), {3.5}, 1e-12);
  check_close(nn::MeanSquaredError(nn::Reduction::sum)(y, ones({2, 2}, f64)), {7.0}, 1e-12);
}

TEST_CASE("binary_crossentropy: clipped probabilities and the stable logits form") {
  Tensor y = tensor({{1.0, 0.0}, {0.0, 1.0}});
  Tensor p = tensor({{0.8, 0.1}, {0.3, 1.0}});
  check_close(nn::binary_crossentropy(y, p),
              {(-std::log(0.8) - std::log(0.9)) / 2, (-std::log(0.7) - std::log(1 - 1e-7)) / 2},
              1e-9);
  // p = 0 with label 1 is clipped to eps.
  check_close(nn::binary_crossentropy(tensor({{1.0}}), tensor({{0.0}})), {-std::log(1e-7)}, 1e-9);

  const std::vector<double> xs = {2, -1, 0}, ys = {1, 0, 0.3};
  double expected = 0;
  for (int i = 0; i < 3; ++i)
    expected += ys[i] * std::log1p(std::exp(-xs[i])) + (1 - ys[i]) * std::log1p(std::exp(xs[i]));
  Tensor yl = tensor({{1.0, 0.0, 0.3}}), xl = tensor({{2.0, -1.0, 0.0}});
  check_close(nn::binary_crossentropy(yl, xl, true), {expected / 3}, 1e-12);
  // The logits form equals the probability form on sigmoid(x) away from the clip.
  check_close(nn::binary_crossentropy(yl, xl, true), nn::binary_crossentropy(yl, sigmoid(xl)),
              1e-10);
  // The gradient is (sigmoid(x) - y) / n, exactly at the kink x = 0 as well.
  GradientTape tape;
  tape.watch(xl);
  Tensor g = tape.gradient(nn::binary_crossentropy(yl, xl, true), xl);
  std::vector<double> expected_grad;
  for (int i = 0; i < 3; ++i)
    expected_grad.push_back((1 / (1 + std::exp(-xs[i])) - ys[i]) / 3);
  check_close(g, expected_grad, 1e-12);
}

TEST_CASE("loss gradients match central differences in f64") {
  random::seed(11);
  Tensor probs = random::uniform({3, 4}, 0.1, 1.0, f64);
  Tensor logits = random::normal({3, 4}, 0, 2, f64);
  Tensor labels = tensor({3, 0, 2});
  Tensor soft = softmax(random::normal({3, 4}, 0, 1, f64));
  Tensor targets = random::uniform({3, 4}, 0, 1, f64);
  SECTION("sparse categorical") {
    check_gradient([&](const Tensor& x) { return nn::SparseCategoricalCrossentropy()(labels, x); },
                   probs);
    check_gradient(
        [&](const Tensor& x) { return nn::SparseCategoricalCrossentropy(true)(labels, x); },
        logits);
  }
  SECTION("categorical") {
    check_gradient([&](const Tensor& x) { return nn::CategoricalCrossentropy()(soft, x); }, probs);
    check_gradient([&](const Tensor& x) { return nn::CategoricalCrossentropy(true)(soft, x); },
                   logits);
  }
  SECTION("binary") {
    Tensor p = random::uniform({3, 4}, 0.05, 0.95, f64);
    check_gradient([&](const Tensor& x) { return nn::BinaryCrossentropy()(targets, x); }, p);
    check_gradient([&](const Tensor& x) { return nn::BinaryCrossentropy(true)(targets, x); },
                   logits);
  }
  SECTION("mean squared error, and the gradient with respect to y_true") {
    check_gradient([&](const Tensor& x) { return nn::MeanSquaredError()(targets, x); }, logits);
    check_gradient([&](const Tensor& t) { return nn::MeanSquaredError()(t, logits); }, targets);
    check_gradient([&](const Tensor& t) { return nn::CategoricalCrossentropy(true)(t, logits); },
                   soft);
  }
}

TEST_CASE("extreme logits (1e4) give finite losses and gradients") {
  Tensor x = tensor({{1e4f, -1e4f, 0.f}, {1e4f, 0.f, 0.f}});
  Tensor labels = tensor({1, 0});
  GradientTape tape(TapeOptions{.persistent = true});
  tape.watch(x);
  Tensor sparse = nn::sparse_categorical_crossentropy(labels, x, true);
  check_close(sparse, {2e4, 0}, 1e-6);
  Tensor g = tape.gradient(sum(sparse), x);
  CHECK(all_finite(g));
  check_close(g, {1, -1, 0, 0, 0, 0}, 1e-6, 1e-6);  // softmax - one_hot

  Tensor y = one_hot(labels, 3);
  Tensor cat = nn::categorical_crossentropy(y, x, true);
  check_close(cat, {2e4, 0}, 1e-6);
  CHECK(all_finite(tape.gradient(sum(cat), x)));

  Tensor xb = tensor({{1e4f, -1e4f, 1e4f, -1e4f}});
  Tensor yb = tensor({{1.f, 1.f, 0.f, 0.f}});
  tape.watch(xb);
  Tensor bce = nn::binary_crossentropy(yb, xb, true);
  check_close(bce, {5e3}, 1e-6);
  check_close(tape.gradient(bce, xb), {0, -0.25, 0.25, 0}, 1e-6, 1e-7);

  // Probabilities of exactly 0 and 1 are clipped: finite values and gradients.
  Tensor p = tensor({{0.f, 1.f}});
  tape.watch(p);
  Tensor bp = nn::binary_crossentropy(tensor({{1.f, 0.f}}), p);
  CHECK(all_finite(bp));
  CHECK(all_finite(tape.gradient(bp, p)));
}

TEST_CASE("loss errors name the loss, the shapes and the dtypes") {
  Tensor p = tensor({{0.2f, 0.8f, 0.f}, {0.5f, 0.5f, 0.f}});
  check_error(
      [&] {
        nn::SparseCategoricalCrossentropy()(tensor({0, 1, 2}), p);
      },
      {"sparse_categorical_crossentropy", "i32[3]", "f32[2,3]"});
  check_error(
      [&] {
        nn::sparse_categorical_crossentropy(tensor({0.f, 1.f}), p);
      },
      {"sparse_categorical_crossentropy", "integers", "f32[2]"});
  check_error(
      [&] {
        nn::sparse_categorical_crossentropy(tensor({0, 3}), p);
      },
      {"sparse_categorical_crossentropy", "label 3", "out of range"});
  check_error(
      [&] {
        nn::sparse_categorical_crossentropy(tensor({0, 1}), tensor({{1, 2, 3}}));
      },
      {"sparse_categorical_crossentropy", "floating", "i32[1,3]"});
  check_error(
      [&] {
        nn::CategoricalCrossentropy()(ones({2, 4}), p);
      },
      {"categorical_crossentropy", "f32[2,4]", "f32[2,3]"});
  check_error(
      [&] {
        nn::MeanSquaredError()(ones({2, 3}), ones({3, 2}));
      },
      {"mean_squared_error", "f32[2,3]", "f32[3,2]"});
  check_error(
      [&] {
        nn::mean_squared_error(ones({2}), tensor({1, 2}));
      },
      {"mean_squared_error", "floating", "i32[2]"});
  check_error(
      [&] {
        nn::BinaryCrossentropy(true)(ones({4, 2}), ones({4, 3}));
      },
      {"binary_crossentropy", "f32[4,2]", "f32[4,3]"});
  check_error([&] { nn::MeanSquaredError()(Tensor(), p); }, {"mean_squared_error", "undefined"});
}

TEST_CASE("losses trace: an unknown batch dim reduces by the run-time batch size") {
  nn::SparseCategoricalCrossentropy loss(true);
  auto f = kiln::function([&](const Tensor& labels, const Tensor& x) { return loss(labels, x); },
                          std::vector<TensorSpec>{TensorSpec({-1}, i64), TensorSpec({-1, 3}, f32)});
  random::seed(3);
  for (int64_t batch : {2, 5}) {
    Tensor x = random::normal({batch, 3});
    Tensor labels = random::randint({batch}, 0, 3);
    check_close(f(labels, x), loss(labels, x), 1e-5, 1e-6);
  }
  CHECK(f.tracing_count() == 1);
  // u8 labels against probabilities, as a Fashion-MNIST model's traced step sees them.
  nn::SparseCategoricalCrossentropy probs_loss;
  auto h =
      kiln::function([&](const Tensor& labels, const Tensor& p) { return probs_loss(labels, p); },
                     std::vector<TensorSpec>{TensorSpec({-1}, u8), TensorSpec({-1, 3}, f32)});
  Tensor p = tensor({{0.1f, 0.6f, 0.3f}, {0.2f, 0.2f, 0.6f}, {0.5f, 0.25f, 0.25f}});
  Tensor u8_labels = tensor({uint8_t{1}, uint8_t{2}, uint8_t{0}});
  check_close(h(u8_labels, p), {(-2 * std::log(0.6) - std::log(0.5)) / 3}, 1e-6);
  check_close(h(u8_labels.slice(0, 0, 2), p.slice(0, 0, 2)), {-std::log(0.6)}, 1e-6);
  CHECK(h.tracing_count() == 1);
  nn::MeanSquaredError mse;
  auto g = kiln::function([&](const Tensor& y, const Tensor& p) { return mse(y, p); },
                          std::vector<TensorSpec>{TensorSpec({-1, 2}), TensorSpec({-1, 2})});
  Tensor y = tensor({{1.f, 2.f}, {3.f, 4.f}, {0.f, 0.f}});
  check_close(g(y, zeros({3, 2})), {(1 + 4 + 9 + 16) / 6.0}, 1e-6);
}

// ---- metrics ---------------------------------------------------------------------------------

TEST_CASE("Mean: a running mean in two f64 variables, 0 before any update") {
  nn::Mean m("loss");
  CHECK(m.value() == 0.0);
  auto vars = m.variables();
  REQUIRE(vars.size() == 2);
  CHECK(vars[0].name() == "loss/total");
  CHECK(vars[1].name() == "loss/count");
  for (const Variable& v : vars) {
    CHECK(!v.trainable());
    CHECK(v.dtype() == f64);
    CHECK(v.shape() == Shape{});
  }
  m.update(tensor({1.f, 2.f, 3.f}));
  CHECK(m.value() == Approx(2.0));
  m.update(tensor({{4, 5}}));
  CHECK(m.value() == Approx(3.0));
  m.update(tensor(10.0));
  CHECK(m.value() == Approx(25.0 / 6));
  CHECK(m.result().dtype() == f64);
  m.update_state(Tensor(), tensor({-25.0}));  // averages y_pred
  CHECK(m.value() == Approx(0.0));
  m.reset_state();
  CHECK(m.value() == 0.0);
  CHECK(vars[1].value().item<double>() == 0.0);
}

TEST_CASE("accuracy metrics against hand-counted matches") {
  nn::Accuracy acc;
  CHECK(acc.name() == "accuracy");
  acc.update_state(tensor({1, 2, 3, 4}), tensor({1.f, 2.f, 0.f, 4.f}));
  CHECK(acc.value() == Approx(0.75));
  acc.update_state(tensor({1, 2}), tensor({{1.f}, {0.f}}));  // [B] vs [B, 1]
  CHECK(acc.value() == Approx(4.0 / 6));

  nn::SparseCategoricalAccuracy sca;
  Tensor scores = tensor({{0.9f, 0.05f, 0.05f}, {0.1f, 0.2f, 0.7f}, {0.f, 0.f, 1.f}});
  sca.update_state(tensor({0, 1, 2}), scores);
  CHECK(sca.value() == Approx(2.0 / 3));
  sca.update_state(tensor({{uint8_t{1}}}), tensor({{0.f, 1.f, 0.f}}));  // u8 [B, 1] labels
  CHECK(sca.value() == Approx(3.0 / 4));
  sca.update_state(tensor({2.f}), tensor({{0.f, 1.f, 0.f}}));  // float labels compare too
  CHECK(sca.value() == Approx(3.0 / 5));

  nn::CategoricalAccuracy ca;
  ca.update_state(tensor({{0.f, 1.f}, {1.f, 0.f}, {0.f, 1.f}}),
                  tensor({{0.3f, 0.7f}, {0.6f, 0.4f}, {0.9f, 0.1f}}));
  CHECK(ca.value() == Approx(2.0 / 3));
}

TEST_CASE("metric errors name the metric and both shapes") {
  nn::SparseCategoricalAccuracy sca;
  check_error(
      [&] {
        sca.update_state(tensor({0, 1}), ones({3, 3}));
      },
      {"sparse_categorical_accuracy", "i32[2]", "f32[3,3]"});
  nn::CategoricalAccuracy ca;
  check_error(
      [&] {
        ca.update_state(ones({2, 3}), ones({2, 4}));
      },
      {"categorical_accuracy", "f32[2,3]", "f32[2,4]"});
  nn::Accuracy acc("acc");
  check_error(
      [&] {
        acc.update_state(ones({2, 3}), ones({3, 2}));
      },
      {"acc", "f32[2,3]", "f32[3,2]"});
  nn::Mean m("m");
  check_error([&] { m.update(Tensor()); }, {"m", "undefined"});
  CHECK(sca.value() == 0.0);  // failed updates change nothing
}

TEST_CASE("metrics updated inside a traced function equal the eager ones") {
  random::seed(21);
  nn::SparseCategoricalAccuracy traced_acc("traced"), eager_acc("eager");
  nn::Mean traced_mean("traced_mean"), eager_mean("eager_mean");
  auto step = kiln::function([&](const Tensor& labels, const Tensor& scores) {
    traced_acc.update_state(labels, scores);
    traced_mean.update(max(scores, {-1}));
    return traced_acc.result();
  });
  for (int i = 0; i < 4; ++i) {
    Tensor scores = random::normal({6, 4});
    Tensor labels = random::randint({6}, 0, 4);
    const double traced = step(labels, scores).item<double>();
    eager_acc.update_state(labels, scores);
    eager_mean.update(max(scores, {-1}));
    CHECK(traced == Approx(eager_acc.value()).epsilon(1e-12));
    CHECK(traced_acc.value() == Approx(eager_acc.value()).epsilon(1e-12));
    CHECK(traced_mean.value() == Approx(eager_mean.value()).epsilon(1e-6));
  }
  CHECK(step.tracing_count() == 1);
  CHECK(traced_acc.variables()[1].value().item<double>() == 24.0);
  // A traced reset clears the state in place.
  auto reset = kiln::function([&] { traced_acc.reset_state(); });
  reset();
  CHECK(traced_acc.value() == 0.0);
  CHECK(traced_acc.variables()[1].value().item<double>() == 0.0);

  // With an unknown batch dim the count is read when the function runs.
  nn::Accuracy dyn("dyn");
  auto update =
      kiln::function([&](const Tensor& y, const Tensor& p) { dyn.update_state(y, p); },
                     std::vector<TensorSpec>{TensorSpec({-1}, i32), TensorSpec({-1}, i32)});
  update(tensor({1, 2, 3}), tensor({1, 0, 3}));
  update(tensor({5}), tensor({5}));
  CHECK(update.tracing_count() == 1);
  CHECK(dyn.variables()[1].value().item<double>() == 4.0);
  CHECK(dyn.value() == Approx(0.75));
}
