// Unknown (-1) dims in traced functions: one trace with TensorSpec({-1, ...}) serves every
// batch size and matches eager execution (see "Unknown dims" in ARCHITECTURE.md).

#include <functional>
#include <random>

#include "testing.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::check_error;

namespace {

const int64_t kBatches[] = {1, 7, 128, 1000};

Tensor rnd(const Shape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> v(static_cast<size_t>(s.numel()));
  for (float& x : v)
    x = u(rng);
  return from_vector(v, s);
}

Tensor labels(int64_t n, int64_t depth, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int32_t& x : v)
    x = static_cast<int32_t>(rng() % depth);
  return from_vector(v, Shape{n});
}

using Fn1 = std::function<Tensor(const Tensor&)>;

// Traces fn once on f32[?,6] and checks every batch size against eager execution.
void check_batches(const char* name, const Fn1& fn) {
  INFO("function " << name);
  auto f = kiln::function(fn, std::vector<TensorSpec>{TensorSpec({-1, 6})});
  uint32_t seed = 1;
  for (int64_t n : kBatches) {
    INFO("batch " << n);
    Tensor x = rnd(Shape{n, 6}, seed++);
    Tensor eager = fn(x);
    Tensor traced = f(x);
    REQUIRE(traced.shape() == eager.shape());
    CHECK(traced.dtype() == eager.dtype());
    check_close(traced, eager, 1e-5, 1e-6);
  }
  CHECK(f.tracing_count() == 1);
  const ConcreteFunction cf = f.get_concrete_function(TensorSpec({-1, 6}));
  const std::string text = cf.ir();
  CHECK(text.find("f32[?,6]") != std::string::npos);
  // The graph verifies and its text (-1 attrs, fill_like, ...) round-trips.
  ir::verify(cf.graph());
  CHECK(ir::print(ir::parse(text)) == text);
}

}  // namespace

TEST_CASE("unknown dims: elementwise, matmul, reductions and movement") {
  const Tensor bias = rnd(Shape{6}, 100);
  const Tensor w = rnd(Shape{6, 4}, 101);
  check_batches("bias", [&](const Tensor& x) { return tanh(x * 2.f + bias) - x; });
  check_batches("matmul", [&](const Tensor& x) { return matmul(x, w); });
  check_batches("sum0", [](const Tensor& x) { return sum(x, {0}); });
  check_batches("sum1", [](const Tensor& x) { return sum(x, {1}); });
  check_batches("sum_all", [](const Tensor& x) { return sum(x); });
  check_batches("max0", [](const Tensor& x) { return max(x, {0}, true); });
  check_batches("mean0", [](const Tensor& x) { return mean(x, {0}); });
  check_batches("mean1", [](const Tensor& x) { return mean(x, {1}, true); });
  check_batches("mean_all", [](const Tensor& x) { return mean(x); });
  check_batches("var0", [](const Tensor& x) { return var(x, {0}); });
  check_batches("softmax", [](const Tensor& x) { return softmax(x, -1); });
  check_batches("log_softmax", [](const Tensor& x) { return log_softmax(x, 1); });
  check_batches("reshape", [](const Tensor& x) { return reshape(x, Shape{-1, 3}) * 3.f; });
  check_batches("reshape_back", [](const Tensor& x) {
    return reshape(reshape(x, Shape{-1, 2, 3}), Shape{-1, 6});
  });
  check_batches("transpose", [](const Tensor& x) { return transpose(x, {1, 0}) + 1.f; });
  check_batches("concat", [](const Tensor& x) { return concat({x, x * 2.f}, 1); });
  check_batches("expand_squeeze", [](const Tensor& x) { return squeeze(expand_dims(x, 1), 1); });
  check_batches("like", [](const Tensor& x) { return x + ones_like(x) + full_like(x, 2.5); });
  check_batches("broadcast_keep", [](const Tensor& x) {
    return broadcast_to(reshape(x, Shape{-1, 1, 6}), Shape{-1, 3, 6});
  });
  check_batches("pad", [](const Tensor& x) { return pad(x, {{0, 0}, {1, 2}}, 1.0); });
}

TEST_CASE("unknown dims: sparse softmax cross-entropy with unknown batch") {
  auto fn = [](const Tensor& logits, const Tensor& y) {
    return mean(sparse_softmax_cross_entropy_with_logits(y, logits));
  };
  auto f = kiln::function(fn, std::vector<TensorSpec>{TensorSpec({-1, 6}), TensorSpec({-1}, i32)});
  uint32_t seed = 7;
  for (int64_t n : kBatches) {
    INFO("batch " << n);
    Tensor x = rnd(Shape{n, 6}, seed++);
    Tensor y = labels(n, 6, seed++);
    check_close(f(x, y), fn(x, y), 1e-5, 1e-6);
  }
  CHECK(f.tracing_count() == 1);
}

TEST_CASE("unknown dims: MLP forward and a train step with a tape") {
  const Tensor w1i = rnd(Shape{6, 8}, 200), b1i = rnd(Shape{8}, 201);
  const Tensor w2i = rnd(Shape{8, 3}, 202), b2i = rnd(Shape{3}, 203);
  auto forward = [](const Tensor& x, const Tensor& w1, const Tensor& b1, const Tensor& w2,
                    const Tensor& b2) { return matmul(relu(matmul(x, w1) + b1), w2) + b2; };
  check_batches("mlp", [&](const Tensor& x) { return forward(x, w1i, b1i, w2i, b2i); });

  Variable w1(w1i, "w1"), b1(b1i, "b1"), w2(w2i, "w2"), b2(b2i, "b2");
  Variable e_w1(w1i, "e_w1"), e_b1(b1i, "e_b1"), e_w2(w2i, "e_w2"), e_b2(b2i, "e_b2");
  // Variables are handles: the step captures copies that share the same storage.
  auto make_step = [&](Variable vw1, Variable vb1, Variable vw2, Variable vb2) {
    return [=](const Tensor& x, const Tensor& y) {
      GradientTape tape;
      Tensor logits = forward(x, vw1.value(), vb1.value(), vw2.value(), vb2.value());
      Tensor loss =
          mean(sparse_softmax_cross_entropy_with_logits(y, logits)) + 0.01f * mean(square(logits));
      auto g = tape.gradient(loss, {vw1, vb1, vw2, vb2});
      vw1.assign_sub(g[0] * 0.1f);
      vb1.assign_sub(g[1] * 0.1f);
      vw2.assign_sub(g[2] * 0.1f);
      vb2.assign_sub(g[3] * 0.1f);
      return loss;
    };
  };
  auto eager_step = make_step(e_w1, e_b1, e_w2, e_b2);
  auto step = kiln::function(make_step(w1, b1, w2, b2),
                             std::vector<TensorSpec>{TensorSpec({-1, 6}), TensorSpec({-1}, i32)});
  uint32_t seed = 300;
  for (int round = 0; round < 2; ++round)
    for (int64_t n : kBatches) {
      INFO("batch " << n << ", round " << round);
      Tensor x = rnd(Shape{n, 6}, seed++);
      Tensor y = labels(n, 3, seed++);
      Tensor traced = step(x, y);
      Tensor eager = eager_step(x, y);
      check_close(traced, eager, 1e-5, 1e-6);
      check_close(w1.value(), e_w1.value(), 1e-5, 1e-6);
      check_close(b1.value(), e_b1.value(), 1e-5, 1e-6);
      check_close(w2.value(), e_w2.value(), 1e-5, 1e-6);
      check_close(b2.value(), e_b2.value(), 1e-5, 1e-6);
    }
  CHECK(step.tracing_count() == 1);
}

TEST_CASE("unknown dims: a gradient through a reduction over the unknown axis") {
  const Tensor w = rnd(Shape{6, 2}, 400);
  auto fn = [&](const Tensor& x) {
    GradientTape tape;
    tape.watch(x);
    Tensor loss = sum(square(matmul(x, w))) + mean(x * x) + sum(max(x, {0}));
    return tape.gradient(loss, x);
  };
  check_batches("grad_x", fn);
}

TEST_CASE("unknown dims: clear errors where a known size is needed") {
  auto make = [](auto fn) {
    return kiln::function(fn, std::vector<TensorSpec>{TensorSpec({-1, 3})});
  };
  auto creation = make([](const Tensor& x) { return x + zeros(x.shape()); });
  check_error(
      [&] {
        creation(ones({2, 3}));
      },
      {"full", "[?,3]", "unknown dim", "zeros_like/ones_like"});
  auto rng = make([](const Tensor& x) { return x + random::normal(x.shape()); });
  check_error([&] { rng(ones({2, 3})); }, {"normal", "[?,3]", "unknown dim"});
  auto sl = make([](const Tensor& x) { return slice(x, 0, 0, 1); });
  check_error([&] { sl(ones({2, 3})); }, {"slice: dim 0 of f32[?,3] is unknown"});
  auto bc = make([](const Tensor& x) { return broadcast_to(x, Shape{-1, -1, 3}); });
  check_error([&] { bc(ones({2, 3})); }, {"broadcast_to", "f32[?,3]"});
  // Eager reshape still checks sizes; a wrong traced reshape fails when called.
  auto rs = make([](const Tensor& x) { return reshape(x, Shape{-1, 2}); });
  check_close(rs(ones({4, 3})), std::vector<double>(12, 1.0));
  check_error([&] { rs(ones({3, 3})); }, {"reshape", "f32[3,3]"});
}

namespace {

std::vector<float> values(const Tensor& t) {
  return t.to_vector<float>();
}

// The graph verifies and its text round-trips; returns the text.
std::string checked_ir(const ConcreteFunction& cf) {
  const std::string text = cf.ir();
  ir::verify(cf.graph());
  CHECK(ir::print(ir::parse(text)) == text);
  return text;
}

}  // namespace

TEST_CASE("unknown dims: dropout draws the same masks as eager dropout") {
  auto fn = [](const Tensor& x) { return dropout(x, 0.2, true); };
  auto f = kiln::function(fn, std::vector<TensorSpec>{TensorSpec({-1, 128})});
  uint32_t seed = 500;
  for (int64_t n : kBatches) {
    INFO("batch " << n);
    Tensor x = rnd(Shape{n, 128}, seed++);
    random::seed(21);
    const Tensor e1 = fn(x), e2 = fn(x);
    random::seed(21);
    const Tensor t1 = f(x), t2 = f(x);
    REQUIRE(t1.shape() == x.shape());
    CHECK(values(t1) == values(e1));  // bit-identical to eager
    CHECK(values(t2) == values(e2));
    if (n >= 7) CHECK(values(t1) != values(t2));  // a fresh mask per call
    random::seed(21);
    CHECK(values(f(x)) == values(t1));  // reseeding reproduces them
  }
  CHECK(f.tracing_count() == 1);
  const std::string text = checked_ir(f.get_concrete_function(TensorSpec({-1, 128})));
  CHECK(text.find("rng_bernoulli_like") != std::string::npos);
  CHECK(text.find("blocks = -1") != std::string::npos);

  // Inlined into an enclosing trace, of unknown (the node keeps blocks = -1) or known shape
  // (the blocks are resolved when inlining).
  auto outer = kiln::function([&](const Tensor& x) { return f(x) + f(x * 2.f); },
                              std::vector<TensorSpec>{TensorSpec({-1, 128})});
  auto known = kiln::function([&](const Tensor& x) { return f(x) + f(x * 2.f); });
  for (int64_t n : {int64_t{3}, int64_t{50}}) {
    INFO("batch " << n);
    Tensor x = rnd(Shape{n, 128}, seed++);
    random::seed(8);
    const Tensor e = fn(x) + fn(x * 2.f);
    random::seed(8);
    CHECK(values(outer(x)) == values(e));
    random::seed(8);
    CHECK(values(known(x)) == values(e));
  }
  CHECK(outer.tracing_count() == 1);

  // A tape outside a call: the gradient is the call's own mask, scaled.
  Tensor x = rnd(Shape{9, 128}, seed++);
  GradientTape tape;
  tape.watch(x);
  const Tensor y = f(x);
  const Tensor g = tape.gradient(sum(y), x);
  check_close(g, cast(not_equal(y, Scalar(0.0)), f32) * static_cast<float>(1 / 0.8), 1e-6, 0);
}

TEST_CASE("unknown dims: every random draw shaped like an unknown tensor matches eager") {
  // Draws of unknown and known shapes interleave: each takes the counters an eager one would.
  auto fn = [](const Tensor& x) {
    Tensor u = random::uniform_like(x, -1, 2);
    Tensor k = random::normal({5}, 0, 1);
    Tensor z = random::normal_like(x, 1, 3);
    Tensor i = cast(random::randint_like(cast(x, i32), -4, 9), f32);
    Tensor b = cast(random::bernoulli_like(x, 0.3), f32);
    return u + z * 2.f + i + b * 5.f + sum(k);
  };
  auto f = kiln::function(fn, std::vector<TensorSpec>{TensorSpec({-1, 6})});
  uint32_t seed = 600;
  for (int64_t n : kBatches) {
    INFO("batch " << n);
    Tensor x = rnd(Shape{n, 6}, seed++);
    random::seed(5);
    const Tensor e = fn(x);
    const random::State after_eager = random::state();
    random::seed(5);
    const Tensor t = f(x);
    CHECK(random::state().offset == after_eager.offset);
    CHECK(values(t) == values(e));
  }
  CHECK(f.tracing_count() == 1);
  checked_ir(f.get_concrete_function(TensorSpec({-1, 6})));
}

TEST_CASE("unknown dims: a gradient through dropout with a tape inside the function") {
  const Tensor w = rnd(Shape{6, 5}, 700);
  auto fn = [&](const Tensor& x) {
    GradientTape tape;
    tape.watch(x);
    Tensor y = dropout(tanh(matmul(x, w)), 0.4, true);
    Tensor loss = sum(square(y)) + mean(dropout(x, 0.5, true));
    return tape.gradient(loss, x);
  };
  auto f = kiln::function(fn, std::vector<TensorSpec>{TensorSpec({-1, 6})});
  uint32_t seed = 710;
  for (int64_t n : kBatches) {
    INFO("batch " << n);
    Tensor x = rnd(Shape{n, 6}, seed++);
    random::seed(9);
    const Tensor e = fn(x);
    random::seed(9);
    const Tensor t = f(x);
    REQUIRE(t.shape() == x.shape());
    check_close(t, e, 1e-5, 1e-6);
  }
  CHECK(f.tracing_count() == 1);
}

namespace {

// Traces fn once on `spec` (several unknown dims) and checks values and, through a tape inside
// the function, the gradient of sum(fn(x)^2) against eager execution for every shape.
void check_shapes(const char* name, const Fn1& fn, const TensorSpec& spec,
                  const std::vector<Shape>& shapes) {
  INFO("function " << name);
  auto f = kiln::function(fn, std::vector<TensorSpec>{spec});
  auto grad = [&](const Tensor& x) {
    GradientTape tape;
    tape.watch(x);
    Tensor loss = sum(square(fn(x)));
    return tape.gradient(loss, x);
  };
  auto g = kiln::function(grad, std::vector<TensorSpec>{spec});
  uint32_t seed = 800;
  for (const Shape& s : shapes) {
    INFO("shape " << s.str());
    Tensor x = rnd(s, seed++);
    const Tensor eager = fn(x), traced = f(x);
    REQUIRE(traced.shape() == eager.shape());
    check_close(traced, eager, 1e-6, 1e-7);
    const Tensor eg = grad(x), tg = g(x);
    REQUIRE(tg.shape() == x.shape());
    check_close(tg, eg, 1e-5, 1e-6);
  }
  CHECK(f.tracing_count() == 1);
  CHECK(g.tracing_count() == 1);
  checked_ir(f.get_concrete_function(spec));
  checked_ir(g.get_concrete_function(spec));
}

}  // namespace

TEST_CASE("unknown dims: reshape, expand_dims and squeeze with several unknown dims") {
  const TensorSpec two({-1, -1});
  const std::vector<Shape> twos = {{1, 1}, {7, 3}, {128, 2}, {1000, 5}, {3, 1000}};
  auto check2 = [&](const char* name, const Fn1& fn) { check_shapes(name, fn, two, twos); };
  check2("expand0", [](const Tensor& x) { return expand_dims(x, 0) * 2.f; });
  check2("expand1", [](const Tensor& x) { return tanh(expand_dims(x, 1)); });
  check2("expand_last", [](const Tensor& x) { return expand_dims(x, -1) + 1.f; });
  check2("expand_squeeze", [](const Tensor& x) { return squeeze(expand_dims(x, 1), 1) * x; });
  check2("flatten", [](const Tensor& x) { return reshape(x, Shape{-1}) * 3.f; });

  const TensorSpec three({-1, -1, 4});
  const std::vector<Shape> threes = {{1, 1, 4}, {7, 3, 4}, {128, 2, 4}, {1000, 1, 4}};
  auto check3 = [&](const char* name, const Fn1& fn) { check_shapes(name, fn, three, threes); };
  const Tensor w = rnd(Shape{4, 3}, 900);
  check3("reshape_-1_4", [](const Tensor& x) { return reshape(x, Shape{-1, 4}) * 2.f; });
  check3("flatten_matmul", [&](const Tensor& x) {
    return tanh(matmul(reshape(x, Shape{-1, 4}), w));
  });
  check3("flatten_and_back", [](const Tensor& x) {
    return reshape_like(sin(reshape(x, Shape{-1, 4})), x);
  });
  check3("squeeze_middle", [](const Tensor& x) { return squeeze(expand_dims(x, 2), 2); });
  check3("stack", [](const Tensor& x) { return stack({x, x * 2.f}, 1); });

  // The copied dims are explicit in the IR; graphs without them print as before.
  auto e = kiln::function([](const Tensor& x) { return expand_dims(x, 1); },
                          std::vector<TensorSpec>{two});
  const std::string text = checked_ir(e.get_concrete_function(two));
  CHECK(text.find("copy_dims = [0, -1, 1]") != std::string::npos);
  CHECK(text.find("f32[?,1,?]") != std::string::npos);
  auto one = kiln::function([](const Tensor& x) { return expand_dims(x, 1); },
                            std::vector<TensorSpec>{TensorSpec({-1, 6})});
  CHECK(one.get_concrete_function(TensorSpec({-1, 6})).ir().find("copy_dims") == std::string::npos);
  // reshape_like checks the element counts when called.
  auto bad = kiln::function([](const Tensor& x, const Tensor& y) { return reshape_like(x, y); },
                            std::vector<TensorSpec>{two, two});
  check_close(bad(ones({2, 3}), ones({3, 2})), std::vector<double>(6, 1.0));
  check_error([&] { bad(ones({2, 3}), ones({2, 2})); }, {"reshape_like", "f32[2,3]", "f32[2,2]"});
}
