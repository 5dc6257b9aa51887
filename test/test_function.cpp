// kiln::function: a corpus of traced functions against eager execution, the trace cache,
// variables, randomness, gradients and misuse.
#include "corpus.h"

using namespace kiln;
using kiln::testing::Case;
using kiln::testing::check_close;
using kiln::testing::check_error;
using kiln::testing::corpus;
using kiln::testing::rnd;

TEST_CASE("corpus: every traced function matches eager execution") {
  const auto cases = corpus();
  REQUIRE(cases.size() >= 40);
  uint32_t seed = 1;
  for (const Case& c : cases) {
    INFO("function " << c.name);
    Tensor x = rnd(c.x, seed++), y = rnd(c.y, seed++);
    Tensor eager = c.fn(x, y);
    auto f = kiln::function(c.fn, {.name = c.name});
    Tensor traced = f(x, y);
    REQUIRE(traced.shape() == eager.shape());
    CHECK(traced.dtype() == eager.dtype());
    check_close(traced, eager, 1e-6, 1e-7);
    // A second call uses the cached trace.
    check_close(f(x, y), eager, 1e-6, 1e-7);
    CHECK(f.tracing_count() == 1);
    const ConcreteFunction cf = f.get_concrete_function(x, y);
    const std::string text = cf.ir();
    CHECK(text.find("func @") != std::string::npos);
    // The traced graph verifies, and its text round-trips through the parser.
    ir::verify(cf.graph());
    CHECK(ir::print(ir::parse(text)) == text);
  }
}

TEST_CASE("trace cache: retrace counts over call sequences") {
  auto f = kiln::function([](const Tensor& x, int64_t k) { return x * static_cast<float>(k); });
  f(ones({2}), 3);
  f(ones({2}), 3);
  CHECK(f.tracing_count() == 1);  // same shapes, same static value
  f(ones({3}), 3);
  CHECK(f.tracing_count() == 2);  // a new shape
  f(ones({3}, f64), 3);
  CHECK(f.tracing_count() == 3);  // a new dtype
  f(ones({3}), 4);
  CHECK(f.tracing_count() == 4);  // a changed static argument
  f(ones({2}), 3);
  CHECK(f.tracing_count() == 4);  // cached

  auto g = kiln::function([](const Tensor& x) { return x + 1.f; },
                          std::vector<TensorSpec>{TensorSpec({-1, 3}, f32)});
  check_close(g(zeros({2, 3})), std::vector<double>(6, 1.0));
  check_close(g(zeros({5, 3})), std::vector<double>(15, 1.0));
  CHECK(g.tracing_count() == 1);  // -1 takes every size
  check_error([&] { g(zeros({2, 4})); }, {"input_signature", "f32[2,4]", "f32[?,3]"});
  check_error([&] { g(zeros({2, 3}, i32)); }, {"input_signature", "i32[2,3]"});

  auto h = kiln::function([](const Tensor& x) { return x * 2.f; },
                          FunctionOptions{.name = "h", .reduce_retracing = true});
  h(ones({2, 3}));
  h(ones({4, 3}));  // retraces once with dim 0 unknown
  h(ones({7, 3}));
  check_close(h(ones({9, 3})), std::vector<double>(27, 2.0));
  CHECK(h.tracing_count() == 2);
  CHECK(h.get_concrete_function(TensorSpec({-1, 3})).ir().find("f32[?,3]") != std::string::npos);
}

TEST_CASE("variables: captured by reference, assigned in order") {
  Variable v(tensor({1.f, 2.f}), "v");
  auto f = kiln::function([&](const Tensor& x) {
    v.assign_add(x);
    Tensor after = v.value();
    v.assign(after * 2.f);
    return after;
  });
  check_close(f(tensor({1.f, 1.f})), {2, 3});
  check_close(v, {4, 6});        // the assign inside the trace is visible outside
  v.assign(tensor({0.f, 0.f}));  // an assign outside is seen by the next call
  check_close(f(tensor({1.f, 1.f})), {1, 1});
  check_close(v, {2, 2});
  CHECK(f.tracing_count() == 1);

  Tensor init = ones({1});
  auto make = kiln::function([&](const Tensor& x) {
    Variable w(init, "created");  // from a concrete value, as TF lifts initializers
    return x * w;
  });
  check_close(make(ones({1})), {1});  // first trace may create
  check_error([&] { make(ones({2})); }, {"Variable 'created'", "other than the first"});
}

TEST_CASE("randomness: fresh draws per call, reproducible, identical to eager") {
  auto f = kiln::function([](const Tensor& x) { return dropout(x, 0.5, true); });
  Tensor x = ones({64});
  random::seed(11);
  Tensor a = f(x), b = f(x);
  CHECK(a.to_vector<float>() != b.to_vector<float>());  // different masks per call
  random::seed(11);
  Tensor a2 = f(x);
  CHECK(a2.to_vector<float>() == a.to_vector<float>());  // re-seeding reproduces them
  random::seed(11);
  Tensor e = dropout(x, 0.5, true);
  CHECK(e.to_vector<float>() == a.to_vector<float>());  // eager and traced agree
  auto g = kiln::function([] { return random::normal({3}); });
  random::seed(2);
  Tensor n1 = g();
  random::seed(2);
  CHECK(random::normal({3}).to_vector<float>() == n1.to_vector<float>());
}

TEST_CASE("gradients: a tape inside a traced train step, and outside a call") {
  Variable w(tensor({{0.5f}, {-0.5f}}), "w");
  Tensor x = tensor({{1.f, 2.f}, {3.f, 4.f}});
  Tensor y = tensor({{1.f}, {2.f}});
  auto step = kiln::function([&](const Tensor& xb, const Tensor& yb) {
    GradientTape tape;
    Tensor loss = mean(square(matmul(xb, w) - yb));
    Tensor g = tape.gradient(loss, {w})[0];
    w.assign_sub(g * 0.05f);
    return loss;
  });
  // The same step eagerly on a copy.
  Variable w2(w.value(), "w2");
  auto eager_step = [&] {
    GradientTape tape;
    Tensor loss = mean(square(matmul(x, w2) - y));
    Tensor g = tape.gradient(loss, {w2})[0];
    w2.assign_sub(g * 0.05f);
    return loss.item<float>();
  };
  for (int i = 0; i < 5; ++i) {
    const float traced = step(x, y).item<float>();
    CHECK(traced == Approx(eager_step()).epsilon(1e-6));
  }
  check_close(w, w2.value(), 1e-6, 1e-7);
  CHECK(step.tracing_count() == 1);

  auto f = kiln::function([](const Tensor& a) { return sum(a * a * a); });
  Tensor a = tensor({1.0, 2.0});
  GradientTape tape;
  tape.watch(a);
  Tensor out = f(a);
  check_close(tape.gradient(out, a), {3, 12});
}

TEST_CASE("nesting: a function called inside another is inlined") {
  auto inner = kiln::function([](const Tensor& x) { return exp(x) + 1.f; });
  auto outer = kiln::function([&](const Tensor& x) { return inner(x) * 2.f; });
  Tensor x = tensor({0.f, 1.f});
  check_close(outer(x), {4, 2 * (std::exp(1.0) + 1)}, 1e-6);
  const std::string text = outer.get_concrete_function(x).ir();
  CHECK(text.find("exp(") != std::string::npos);  // inner's ops are in the outer graph
}

TEST_CASE("results: tuple, vector, void and no arguments") {
  auto t = kiln::function([](const Tensor& x) { return std::make_tuple(x + 1.f, x * 2.f); });
  auto [a, b] = t(tensor({1.f}));
  check_close(a, {2});
  check_close(b, {2});
  auto v = kiln::function([](const std::vector<Tensor>& xs) {
    return std::vector<Tensor>{xs[1], xs[0]};
  });
  auto r = v(std::vector<Tensor>{tensor({1.f}), tensor({2.f})});
  check_close(r[0], {2});
  Variable counter(zeros({1}), "counter");
  auto bump = kiln::function([&]() { counter.assign_add(ones({1})); });
  bump();
  bump();
  check_close(counter, {2});
  CHECK(bump.tracing_count() == 1);
}

TEST_CASE("misuse: reading a symbolic tensor raises and points to cond/while_loop") {
  auto f = kiln::function([](const Tensor& x) {
    if (x.item<float>() > 0) return x;
    return -x;
  });
  check_error([&] { f(tensor({1.f})); }, {"item", "symbolic", "kiln::cond"});
  auto g = kiln::function([](const Tensor& x) { return x.to_vector<float>().size() ? x : x; });
  check_error([&] { g(tensor({1.f})); }, {"to_vector", "symbolic"});
}

TEST_CASE("control flow: cond and while_loop eagerly, with gradients") {
  Tensor x = tensor({1.5, -2.0});
  auto pick = [&](const Tensor& p) {
    return kiln::cond(
        p, [&] { return x * 2.0; }, [&] { return x - 1.0; });
  };
  check_close(pick(tensor(true)), {3, -4});
  check_close(pick(tensor(false)), {0.5, -3});
  // while: double v until its sum exceeds 20; the trip count depends on the data.
  auto run = [](const Tensor& v0) {
    return while_loop([](const std::vector<Tensor>& v) { return sum(v[0]) < 20.0; },
                      [](const std::vector<Tensor>& v) {
                        return std::vector<Tensor>{v[0] * 2.0, v[1] + 1.0};
                      },
                      {v0, tensor(0.0)});
  };
  auto out = run(tensor({1.0, 2.0}));
  check_close(out[0], {8, 16});
  check_close(out[1], {3});
  // A tape records the iterations that ran: d(sum v)/dv0 = 2^trips.
  Tensor v0 = tensor({1.0, 2.0});
  GradientTape tape;
  tape.watch(v0);
  Tensor s = sum(run(v0)[0]);
  check_close(tape.gradient(s, v0), {8, 8});
  check_error(
      [&] {
        kiln::cond(
            tensor({true, false}), [&] { return x; }, [&] { return x; });
      },
      {"cond", "scalar", "bool[2]"});
}

TEST_CASE("control flow: traced cond and while_loop are regions of one node") {
  auto f = kiln::function([](const Tensor& x, const Tensor& flag) {
    Tensor scale = x * 3.f;  // captured by the then branch
    return kiln::cond(
        flag > 0.f, [&] { return scale + 1.f; }, [&] { return exp(x); });
  });
  Tensor x = tensor({0.f, 1.f});
  check_close(f(x, tensor(1.f)), {1, 4});
  check_close(f(x, tensor(-1.f)), {1, std::exp(1.0)}, 1e-6);
  CHECK(f.tracing_count() == 1);  // one trace serves both branches
  const ConcreteFunction cf = f.get_concrete_function(x, tensor(1.f));
  const std::string text = cf.ir();
  CHECK(text.find("= cond(") != std::string::npos);
  CHECK(text.find("regions {") != std::string::npos);
  ir::verify(cf.graph());
  CHECK(ir::print(ir::parse(text)) == text);

  // A data-dependent loop: count the halvings until x < 1.
  auto g = kiln::function([](const Tensor& x) {
    auto r = while_loop([](const std::vector<Tensor>& v) { return max(v[0]) >= 1.f; },
                        [](const std::vector<Tensor>& v) {
                          return std::vector<Tensor>{v[0] * 0.5f, v[1] + 1};
                        },
                        {x, tensor(0)});
    return r[1];
  });
  CHECK(g(tensor({3.f, 5.f})).item<int32_t>() == 3);
  CHECK(g(tensor({100.f, 1.f})).item<int32_t>() == 7);
  CHECK(g.tracing_count() == 1);
  const std::string wtext = g.get_concrete_function(tensor({3.f, 5.f})).ir();
  CHECK(wtext.find("= while(") != std::string::npos);
  ir::verify(g.get_concrete_function(tensor({3.f, 5.f})).graph());
  CHECK(ir::print(ir::parse(wtext)) == wtext);

  // A tape outside a call differentiates through the regions the interpreter runs.
  Tensor a = tensor({2.0});
  auto h = kiln::function([](const Tensor& v) {
    return kiln::cond(
        sum(v) > 0.0, [&] { return v * v; }, [&] { return -v; });
  });
  GradientTape tape({.persistent = true});
  tape.watch(a);
  Tensor y = h(a);
  check_close(tape.gradient(y, a), {4});
  // Tapes inside the trace: test_traced_grad.cpp.
}

TEST_CASE("control flow: a function with a cond inlines into another") {
  auto inner = kiln::function([](const Tensor& x) {
    return kiln::cond(
        x[0] > 0.f, [&] { return x * 10.f; }, [&] { return x; });
  });
  auto outer = kiln::function([&](const Tensor& x) { return inner(x) + 1.f; });
  check_close(outer(tensor({1.f, 2.f})), {11, 21});
  check_close(outer(tensor({-1.f, 2.f})), {0, 3});
  CHECK(outer.get_concrete_function(tensor({1.f, 2.f})).ir().find("= cond(") != std::string::npos);
}

TEST_CASE("IR: golden text of small traced functions") {
  Variable w(tensor({1.f, 2.f}), "layer/w");
  auto f = kiln::function(
      [&](const Tensor& x) {
        Tensor y = relu(x * w + 1.f);
        w.assign(y);
        return sum(y);
      },
      FunctionOptions{.name = "step"});
  const std::string text = f.get_concrete_function(TensorSpec({2})).ir();
  CHECK(text ==
        "func @step(%0: f32[2]) -> (f32[]) {\n"
        "  %1 = read_variable() {var = 0} : f32[2]\n"
        "  %2 = mul(%0, %1) : f32[2]\n"
        "  %3 = constant() {index = 0} : f32[]\n"
        "  %4 = add(%2, %3) : f32[2]\n"
        "  %5 = relu(%4) : f32[2]\n"
        "  assign_variable(%5) {var = 0}\n"
        "  %6 = reduce_sum(%5) {axes = [0], keepdims = false} : f32[]\n"
        "  return %6\n"
        "}\n"
        "variables:\n"
        "  0 \"layer/w\" f32[2]\n"
        "constants:\n"
        "  0 f32[] = 1.0\n");
  auto g = kiln::function([](const Tensor& x) { return matmul(x, x.transpose()); },
                          FunctionOptions{.name = "gram"});
  CHECK(g.get_concrete_function(TensorSpec({-1, 3})).ir() ==
        "func @gram(%0: f32[?,3]) -> (f32[?,?]) {\n"
        "  %1 = transpose(%0) {perm = [1, 0]} : f32[3,?]\n"
        "  %2 = matmul(%0, %1) : f32[?,?]\n"
        "  return %2\n"
        "}\n");
}

TEST_CASE("misuse: a symbolic tensor leaked from a finished trace is refused") {
  Tensor leaked;
  auto f = kiln::function([&](const Tensor& x) {
    leaked = x * 2.f;
    return x;
  });
  f(ones({2}));
  auto g = kiln::function([&](const Tensor& x) { return x + leaked; });
  check_error([&] { g(ones({2})); }, {"another trace"});
  check_error([&] { (void)(leaked + 1.f); }, {"outside the trace"});
}
