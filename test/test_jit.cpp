// The JIT: fused kernels against the interpreter (the reference), kernel counts, the
// polynomial math against libm, threads, dynamic dims, broadcasting and KILN_DUMP.
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <kiln/jit/cpu/codegen.h>
#include <kiln/jit/executable.h>
#include <kiln/jit/lowering.h>
#include <kiln/jit/pass.h>
#include <kiln/tracer/saved_function.h>

#include "corpus.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::rnd;

namespace {

const FunctionOptions kInterpreted{.name = "ref", .jit_compile = false};

// Max relative error of an f32 unary function compiled by the JIT against libm in f64, at xs.
double max_rel_error_at(Tensor (*op)(const Tensor&), double (*ref)(double),
                        const std::vector<float>& xs) {
  const int64_t n = static_cast<int64_t>(xs.size());
  auto f = kiln::function([op](const Tensor& x) { return op(x); });
  const Tensor x = from_vector(xs, {n});
  REQUIRE(f.get_concrete_function(x).compiled());
  const std::vector<float> got = f(x).to_vector<float>();
  double worst = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double want = ref(static_cast<double>(xs[i]));
    worst = std::max(
        worst, std::abs(static_cast<double>(got[i]) - want) / std::max(std::abs(want), 1e-30));
  }
  return worst;
}

// The same over n points evenly spaced in [lo, hi].
double max_rel_error(Tensor (*op)(const Tensor&), double (*ref)(double), double lo, double hi,
                     int64_t n = 200001) {
  std::vector<float> xs(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    xs[static_cast<size_t>(i)] =
        static_cast<float>(lo + (hi - lo) * static_cast<double>(i) / static_cast<double>(n - 1));
  return max_rel_error_at(op, ref, xs);
}

// Points from lo to hi (both > 0) growing by `factor`, each with both signs.
std::vector<float> geometric(double lo, double hi, double factor) {
  std::vector<float> xs;
  for (double x = lo; x <= hi; x *= factor) {
    xs.push_back(static_cast<float>(x));
    xs.push_back(static_cast<float>(-x));
  }
  return xs;
}

double sigmoid_ref(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}

}  // namespace

TEST_CASE("jit: the tracer corpus compiled matches the interpreter") {
  for (const auto& c : kiln::testing::corpus()) {
    INFO(c.name);
    const Tensor x = rnd(c.x, 1), y = rnd(c.y, 2);
    auto compiled = kiln::function(c.fn);
    auto interpreted = kiln::function(c.fn, kInterpreted);
    const Tensor got = compiled(x, y), want = interpreted(x, y);
    REQUIRE(got.dtype() == want.dtype());
    if (is_floating(got.dtype()))
      check_close(got, want, 1e-5, 1e-6);
    else
      check_close(got, want, 0, 0);  // integer and bool results are exact
  }
}

TEST_CASE("jit: an elementwise chain is one kernel") {
  auto chain = kiln::function(
      [](const Tensor& x, const Tensor& y) { return sigmoid(x * y + 0.5f) * x - y * y; });
  const Tensor x = rnd({1000}, 3), y = rnd({1000}, 4);
  const ConcreteFunction cf = chain.get_concrete_function(x, y);
  CHECK(cf.compiled());
  CHECK(cf.kernel_count() == 1);
  CHECK(cf.ir(IRStage::optimized).find("kernel k0") != std::string::npos);
  CHECK(cf.dot().find("digraph") == 0);
  auto ref = kiln::function(
      [](const Tensor& x, const Tensor& y) { return sigmoid(x * y + 0.5f) * x - y * y; },
      kInterpreted);
  check_close(chain(x, y), ref(x, y), 1e-6, 1e-7);
  // Six elementwise ops with a broadcast row and column: still one kernel.
  auto bcast = kiln::function([](const Tensor& x, const Tensor& row, const Tensor& col) {
    return tanh(exp(x * row) - col) / (abs(x) + 1.f);
  });
  const Tensor m = rnd({37, 29}, 5), r = rnd({29}, 6), c = rnd({37, 1}, 7);
  CHECK(bcast.get_concrete_function(m, r, c).kernel_count() == 1);
  auto bref =
      kiln::function([](const Tensor& x, const Tensor& row,
                        const Tensor& col) { return tanh(exp(x * row) - col) / (abs(x) + 1.f); },
                     kInterpreted);
  check_close(bcast(m, r, c), bref(m, r, c), 1e-5, 1e-6);
}

TEST_CASE("jit: polynomial exp, log, tanh and sigmoid against libm") {
  auto report = [](const char* name, double err) {
    INFO(name << ": max relative error " << err);
    CHECK(err <= 2e-7);
  };
  report("exp", max_rel_error(
                    kiln::exp, [](double x) { return std::exp(x); }, -87, 88));
  report("log", max_rel_error(
                    kiln::log, [](double x) { return std::log(x); }, 1e-30, 1e30));
  report("log near 1", max_rel_error(
                           kiln::log, [](double x) { return std::log(x); }, 0.5, 2));
  report("tanh", max_rel_error(
                     kiln::tanh, [](double x) { return std::tanh(x); }, -9, 9));
  report("sigmoid", max_rel_error(kiln::sigmoid, sigmoid_ref, -80, 16));
  // Special values follow libm.
  auto f = kiln::function([](const Tensor& x) {
    return std::vector<Tensor>{exp(x), log(x), tanh(x), sigmoid(x)};
  });
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> in = {0.f, -0.f, 1.f, -1.f, inf, -inf, nan, 100.f, -200.f};
  const auto out = f(from_vector(in, {9}));
  for (size_t k = 0; k < out.size(); ++k) {
    const std::vector<float> got = out[k].to_vector<float>();
    for (size_t i = 0; i < in.size(); ++i) {
      const float x = in[i];
      const float want = k == 0   ? std::exp(x)
                         : k == 1 ? std::log(x)
                         : k == 2 ? std::tanh(x)
                                  : static_cast<float>(sigmoid_ref(x));
      INFO("function " << k << " at " << x << ": got " << got[i] << ", want " << want);
      if (std::isnan(want))
        CHECK(std::isnan(got[i]));
      else if (std::isinf(want) || want == 0)
        CHECK(got[i] == want);
      else
        CHECK(std::abs(got[i] - want) <= 2e-7 * std::abs(want));
    }
  }
}

TEST_CASE("jit: polynomial erf against libm, and gelu through it in one vector kernel") {
  auto report = [](const char* name, double err) {
    INFO(name << ": max relative error " << err);
    CHECK(err <= 2e-7);
  };
  auto erf_ref = [](double x) { return std::erf(x); };
  report("erf every 1e-4 in [-6, 6]", max_rel_error(kiln::erf, erf_ref, -6, 6, 120001));
  // Near 0 erf x ~ 2x / sqrt(pi): the relative error must stay small down to tiny x.
  report("erf near 0", max_rel_error_at(kiln::erf, erf_ref, geometric(1e-37, 1, 1.001)));
  // Where the pieces meet, densely.
  report("erf near 1", max_rel_error(kiln::erf, erf_ref, 0.999, 1.001, 20001));
  report("erf near 3.92", max_rel_error(kiln::erf, erf_ref, 3.9, 3.94, 20001));
  report("erf tails", max_rel_error_at(kiln::erf, erf_ref, geometric(3, 3e38, 1.01)));
  // Special values: the sign of zero, +-1 at the infinities, NaN.
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> in = {0.f, -0.f, inf, -inf, NAN, 1e-40f, -1e-40f};
  auto erf_fn = kiln::function([](const Tensor& x) { return erf(x); });
  std::vector<float> got;
  {
    const kiln::testing::KeepSubnormals keep;
    got = erf_fn(from_vector(in, {7})).to_vector<float>();
  }
  CHECK((got[0] == 0.f && !std::signbit(got[0])));
  CHECK((got[1] == 0.f && std::signbit(got[1])));
  CHECK(got[2] == 1.f);
  CHECK(got[3] == -1.f);
  CHECK(std::isnan(got[4]));
  CHECK(std::abs(got[5] - std::erf(1e-40f)) <= 2e-45f);  // subnormals: an ulp of them
  CHECK(std::abs(got[6] - std::erf(-1e-40f)) <= 2e-45f);
  // By default subnormal inputs read as zeros of their sign (core/float_mode.h).
  const std::vector<float> flushed = erf_fn(from_vector(in, {7})).to_vector<float>();
  CHECK((flushed[5] == 0.f && !std::signbit(flushed[5])));
  CHECK((flushed[6] == 0.f && std::signbit(flushed[6])));

  // gelu is 0.5 x (1 + erf(x / sqrt 2)) in core: one kernel, no libm call, vector code.
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / fmt::format("kiln_gelu_{}", ::getpid());
  fs::remove_all(dir);
  ::setenv("KILN_DUMP", dir.c_str(), 1);
  auto g = kiln::function([](const Tensor& x) { return gelu(x); }, {.name = "gelu_poly"});
  const int64_t n = 100001;
  std::vector<float> xs(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    xs[static_cast<size_t>(i)] = static_cast<float>(-10 + 20 * static_cast<double>(i) / (n - 1));
  const Tensor x = from_vector(xs, {n});
  const std::vector<float> y = g(x).to_vector<float>();
  ::unsetenv("KILN_DUMP");
  CHECK(g.get_concrete_function(x).kernel_count() == 1);
  auto read = [&](const char* suffix) {
    std::ifstream in(dir / (std::string("gelu_poly.") + suffix));
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const std::string ll = read("ll"), s = read("s");
  CHECK(ll.find("x float>") != std::string::npos);  // vectorized
  CHECK(ll.find("@erff") == std::string::npos);
  CHECK(s.find("erff") == std::string::npos);
  fs::remove_all(dir);
  // Against the interpreter (libm's erff), and against gelu in f64: the error is absolute
  // where 1 + erf cancels (x < 0), relative to x elsewhere.
  check_close(g(x), kiln::function([](const Tensor& x) { return gelu(x); }, kInterpreted)(x), 1e-5,
              1e-6);
  double worst = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    const double v = xs[i];
    const double want = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
    worst = std::max(worst, std::abs(y[i] - want) / std::max(std::abs(v), 1.0));
  }
  INFO("gelu: max error " << worst << " of max(|x|, 1)");
  CHECK(worst <= 2e-7);
}

TEST_CASE("jit: four threads call one compiled function at once") {
  auto f = kiln::function([](const Tensor& x) { return tanh(x) * 2.f + x * x; });
  std::vector<Tensor> xs, want;
  for (uint32_t t = 0; t < 4; ++t) {
    xs.push_back(rnd({513}, 10 + t));
    want.push_back(tanh(xs.back()) * 2.f + xs.back() * xs.back());
  }
  f(xs[0]);  // compile first, so the threads race on calls, not on the compile
  std::vector<std::thread> threads;
  std::vector<int> bad(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        const std::vector<float> got = f(xs[static_cast<size_t>(t)]).to_vector<float>();
        const std::vector<float> ref = want[static_cast<size_t>(t)].to_vector<float>();
        for (size_t k = 0; k < got.size(); ++k)
          if (std::abs(got[k] - ref[k]) > 1e-5f * (1.f + std::abs(ref[k])))
            ++bad[static_cast<size_t>(t)];
      }
    });
  for (auto& th : threads)
    th.join();
  CHECK(bad == std::vector<int>(4, 0));
  CHECK(f.tracing_count() == 1);
}

TEST_CASE("jit: one compiled function serves batch sizes 1, 7, 128 and 1000") {
  auto f = kiln::function([](const Tensor& x, const Tensor& b) { return sigmoid(x * 2.f + b) - x; },
                          std::vector<TensorSpec>{TensorSpec({-1, 33}), TensorSpec({33})});
  auto ref = kiln::function(
      [](const Tensor& x, const Tensor& b) { return sigmoid(x * 2.f + b) - x; }, kInterpreted);
  const Tensor b = rnd({33}, 20);
  for (int64_t batch : {1, 7, 128, 1000}) {
    INFO("batch " << batch);
    const Tensor x = rnd({batch, 33}, static_cast<uint32_t>(batch));
    check_close(f(x, b), ref(x, b), 1e-5, 1e-7);
  }
  CHECK(f.tracing_count() == 1);
  CHECK(f.get_concrete_function(rnd({5, 33}, 1), b).kernel_count() == 1);
}

TEST_CASE("jit: a kernel's run-time fallback still sees the constants it compiled in") {
  // x * 3 + b with b's unknown batch 1 at run time: the kernel, made for a full b, hands the
  // group to the eager kernels, which need the constant 3 that the kernel had as an immediate
  // (a step run() otherwise skips).
  auto body = [](const Tensor& x, const Tensor& b) { return x * 3.f + b; };
  const std::vector<TensorSpec> sig{TensorSpec({-1, 33}), TensorSpec({-1, 33})};
  auto f = kiln::function(body, sig);
  auto ref = kiln::function(body, kInterpreted);
  const Tensor x = rnd({4, 33}, 1);
  check_close(f(x, rnd({4, 33}, 2)), ref(x, rnd({4, 33}, 2)), 1e-6, 1e-7);
  const Tensor b1 = rnd({1, 33}, 3);
  const Tensor got = f(x, b1);
  const std::vector<float> xs = x.to_vector<float>(), bs = b1.to_vector<float>();
  const std::vector<float> gs = got.to_vector<float>();
  REQUIRE(gs.size() == xs.size());
  for (size_t i = 0; i < xs.size(); ++i)
    CHECK(gs[i] == Approx(xs[i] * 3.0 + bs[i % 33]).epsilon(1e-6));
  CHECK(f.tracing_count() == 1);
}

TEST_CASE("jit: with a dispatch hook installed, the steps go through the interpreter's path") {
  // A recording tape that watches neither input nor variable: the call runs the Executable with
  // the tape's hook installed, so the library call and the variable steps take run_node.
  Variable v(rnd({6, 5}, 4), "v");
  auto body = [&](const Tensor& x) {
    Tensor y = matmul(x, transpose(v.value(), {1, 0}));
    v.assign(v.value() * 0.5f);
    return y;
  };
  auto f = kiln::function(body);
  const Tensor x = rnd({3, 5}, 5);
  const std::vector<float> v0 = v.value().to_vector<float>();
  const Tensor plain = f(x);
  Tensor hooked;
  {
    GradientTape tape;
    hooked = f(x);
  }
  // The second call saw v halved once.
  check_close(hooked, plain * 0.5f, 1e-6, 1e-7);
  const std::vector<float> v2 = v.value().to_vector<float>();
  for (size_t i = 0; i < v0.size(); ++i)
    CHECK(v2[i] == v0[i] * 0.25f);
}

TEST_CASE("jit: a module's code is unloaded when the last function using it goes") {
  // Before, every module stayed mapped for the life of the process: a fuzzer run failed
  // after ~37,000 modules, at the kernel's limit on mappings.
  const int64_t before = jit::cpu::kernel_cache_stats().live;
  {
    auto f = kiln::function([](const Tensor& x) { return exp(x * 0.123f) + 4.56f; });
    auto g = kiln::function([](const Tensor& x) { return exp(x * 0.123f) + 4.56f; });
    const Tensor x = rnd({16}, 3);
    check_close(f(x), g(x), 0, 0);
    CHECK(jit::cpu::kernel_cache_stats().live == before + 1);  // one module, shared
  }
  CHECK(jit::cpu::kernel_cache_stats().live == before);
  // Compiled again after that, it works as before.
  auto h = kiln::function([](const Tensor& x) { return exp(x * 0.123f) + 4.56f; });
  auto ref = kiln::function([](const Tensor& x) { return exp(x * 0.123f) + 4.56f; }, kInterpreted);
  const Tensor x = rnd({16}, 3);
  check_close(h(x), ref(x), 1e-6, 1e-7);
  CHECK(jit::cpu::kernel_cache_stats().live == before + 1);
}

TEST_CASE("jit: KILN_DUMP writes the IR, the fusion groups, LLVM IR and assembly") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / fmt::format("kiln_dump_{}", ::getpid());
  fs::remove_all(dir);
  ::setenv("KILN_DUMP", dir.c_str(), 1);
  auto f = kiln::function([](const Tensor& x) { return exp(x) + 1.f; }, {.name = "dumped"});
  f(rnd({64}, 1));
  ::unsetenv("KILN_DUMP");
  for (const char* suffix : {"traced.ir", "optimized.ir", "fusion.txt", "ll", "s"}) {
    INFO(suffix);
    CHECK(fs::exists(dir / (std::string("dumped.") + suffix)));
  }
  fs::remove_all(dir);
}

TEST_CASE("jit: every primitive has a lowering or a documented library call") {
  for (const OpDef* op : registry().all()) {
    INFO(op->name());
    const jit::Lowering* l = jit::lowering_of(*op);
    REQUIRE(l != nullptr);
    CHECK(std::string(l->how).size() > 5);
  }
}

TEST_CASE("jit: matmul + bias + relu is one library call") {
  auto dense = [](const Tensor& x, const Tensor& w, const Tensor& b) {
    return relu(matmul(x, w) + b);
  };
  auto f = kiln::function(dense);
  auto ref = kiln::function(dense, kInterpreted);
  const Tensor x = rnd({33, 20}, 1), w = rnd({20, 7}, 2), b = rnd({7}, 3);
  const ConcreteFunction cf = f.get_concrete_function(x, w, b);
  CHECK(cf.kernel_count() == 1);
  CHECK(cf.ir(IRStage::optimized).find("matmul_bias_act") != std::string::npos);
  check_close(f(x, w, b), ref(x, w, b), 1e-5, 1e-6);
  // Without the relu, and with the bias on the left.
  auto g = kiln::function(
      [](const Tensor& x, const Tensor& w, const Tensor& b) { return b + matmul(x, w); });
  CHECK(g.get_concrete_function(x, w, b).kernel_count() == 1);
  check_close(g(x, w, b), matmul(x, w) + b, 1e-5, 1e-6);
  // The product used elsewhere too: no fusion, same values.
  auto h = kiln::function([](const Tensor& x, const Tensor& w, const Tensor& b) {
    Tensor p = matmul(x, w);
    return std::vector<Tensor>{relu(p + b), p};
  });
  const auto out = h(x, w, b);
  check_close(out[0], relu(matmul(x, w) + b), 1e-5, 1e-6);
  // A product large enough that each thread adds the bias to its own block of rows, with a
  // (transposed) x read in place and an odd row count.
  const Tensor xt = rnd({300, 131}, 4), wl = rnd({300, 96}, 5), bl = rnd({96}, 6);
  auto big = kiln::function([](const Tensor& xt, const Tensor& w, const Tensor& b) {
    return relu(matmul(transpose(xt, {1, 0}), w) + b);
  });
  // Its sums of 300 terms of up to 4 in size round differently when split into other blocks
  // than the eager product's: partial sums near 20 have an ulp of 2e-6, so allow 1e-4.
  CHECK(big.get_concrete_function(xt, wl, bl).kernel_count() == 1);
  check_close(big(xt, wl, bl), relu(matmul(transpose(xt, {1, 0}), wl) + bl), 1e-5, 1e-4);
  check_close(g(transpose(xt, {1, 0}).contiguous(), wl, bl), matmul(transpose(xt, {1, 0}), wl) + bl,
              1e-5, 1e-4);
}

TEST_CASE("jit: conv2d + bias + relu is one library call") {
  using Conv = std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>;
  const Tensor x = rnd({2, 9, 9, 3}, 1), w = rnd({3, 3, 3, 8}, 2), b = rnd({8}, 3);
  const Tensor b4 = reshape(b, {1, 1, 1, 8});
  struct Case {
    const char* name;
    Conv fn;
    const Tensor& bias;
    int64_t kernels;  // kernel_count() compiled
    bool fused;       // whether the optimized graph holds conv2d_bias_act
  };
  const std::vector<Case> cases = {
      {"relu(conv + b), SAME",
       [](auto& x, auto& w, auto& b) {
         return relu(conv2d(x, w, {1, 1}, Padding::same) + b);
       },
       b, 1, true},
      {"b + conv, stride 2, VALID, no relu",
       [](auto& x, auto& w, auto& b) {
         return b + conv2d(x, w, {2, 2});
       },
       b, 1, true},
      {"relu(conv + b) dilated, b [1,1,1,C]",
       [](auto& x, auto& w, auto& b) {
         return relu(conv2d(x, w, {1, 1}, Padding::valid, {2, 2}) + b);
       },
       b4, 1, true},
      {"the sum used twice: bias fused, relu a kernel",
       [](auto& x, auto& w, auto& b) {
         Tensor s = conv2d(x, w) + b;
         return relu(s) * s;
       },
       b, 2, true},
      {"the convolution used twice: no fusion",
       [](auto& x, auto& w, auto& b) {
         Tensor y = conv2d(x, w);
         return relu(y + b) - y;
       },
       b, 2, false},
      {"a scalar bias: no fusion",
       [](auto& x, auto& w, auto&) { return relu(conv2d(x, w) + 0.5f); }, b, 2, false},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    auto f = kiln::function(c.fn);
    const ConcreteFunction cf = f.get_concrete_function(x, w, c.bias);
    CHECK(cf.kernel_count() == c.kernels);
    CHECK((cf.ir(IRStage::optimized).find("conv2d_bias_act") != std::string::npos) == c.fused);
    check_close(f(x, w, c.bias), kiln::function(c.fn, kInterpreted)(x, w, c.bias), 1e-5, 1e-6);
  }
  // A dynamic batch, including a batch of 1; NaN and -inf through the relu as eagerly (0).
  auto layer = [](const Tensor& x, const Tensor& w, const Tensor& b) {
    return relu(conv2d(x, w, {1, 1}, Padding::same) + b);
  };
  auto dyn =
      kiln::function(layer, std::vector<TensorSpec>{TensorSpec({-1, 9, 9, 3}),
                                                    TensorSpec({3, 3, 3, 8}), TensorSpec({8})});
  auto ref = kiln::function(layer, kInterpreted);
  for (int64_t n : {1, 5}) {
    const Tensor xn = rnd({n, 9, 9, 3}, static_cast<uint32_t>(n));
    check_close(dyn(xn, w, b), ref(xn, w, b), 1e-5, 1e-6);
  }
  CHECK(dyn.get_concrete_function(x, w, b).kernel_count() == 1);
  std::vector<float> bad = b.to_vector<float>();
  bad[0] = NAN;
  bad[1] = -std::numeric_limits<float>::infinity();
  const Tensor bb = from_vector(bad, {8});
  const std::vector<float> got = dyn(x, w, bb).to_vector<float>();
  const std::vector<float> want = ref(x, w, bb).to_vector<float>();
  for (size_t i = 0; i < got.size(); ++i)
    if (i % 8 < 2) CHECK(got[i] == want[i]);
  CHECK(want[0] == 0.f);
}

TEST_CASE("jit: conv_epilogue's golden IR, its round trip, and a saved function using it") {
  ir::Graph g = ir::parse(R"(
func @f(%0: f32[2,5,5,3], %1: f32[3,3,3,4], %2: f32[4], %3: f32[3,3,4]) -> (f32[2,3,3,4], f32[2,3,3,4]) {
  %4 = conv2d(%0, %1) {strides = [1, 1], dilations = [1, 1], padding = "VALID"} : f32[2,3,3,4]
  %5 = add(%2, %4) : f32[2,3,3,4]
  %6 = relu(%5) : f32[2,3,3,4]
  %7 = conv2d(%0, %1) {strides = [1, 1], dilations = [1, 1], padding = "VALID"} : f32[2,3,3,4]
  %8 = add(%7, %3) : f32[2,3,3,4]
  return %6, %8
}
)");
  CHECK(jit::conv_epilogue().run(g));
  ir::verify(g);
  const std::string out = ir::print(g);
  CHECK(out ==
        "func @f(%0: f32[2,5,5,3], %1: f32[3,3,3,4], %2: f32[4], %3: f32[3,3,4]) -> "
        "(f32[2,3,3,4], f32[2,3,3,4]) {\n"
        "  %4 = conv2d_bias_act(%0, %1, %2) {strides = [1, 1], dilations = [1, 1], padding = "
        "\"VALID\", act = \"relu\"} : f32[2,3,3,4]\n"
        "  %5 = conv2d(%0, %1) {strides = [1, 1], dilations = [1, 1], padding = \"VALID\"} : "
        "f32[2,3,3,4]\n"
        "  %6 = add(%5, %3) : f32[2,3,3,4]\n"
        "  return %4, %6\n"
        "}\n");
  CHECK(ir::print(ir::parse(out)) == out);
  CHECK_FALSE(jit::conv_epilogue().run(g));  // a bias per pixel ([3,3,4]) stays an add

  // A saved function holds the traced graph; loaded, it compiles with the fusion.
  namespace fs = std::filesystem;
  namespace sf = kiln::saved_function;
  const fs::path dir = fs::temp_directory_path() / fmt::format("kiln_conv_saved_{}", ::getpid());
  fs::remove_all(dir);
  Variable w(rnd({3, 3, 3, 4}, 1), "w"), b(rnd({4}, 2), "b");
  auto layer = [&](const Tensor& x) { return relu(conv2d(x, w, {1, 1}, Padding::same) + b); };
  auto f = kiln::function(layer, {.name = "conv_layer"});
  const Tensor x = rnd({2, 5, 5, 3}, 3);
  const Tensor want = f(x);
  sf::save(dir.string(), f);
  const sf::Loaded m = sf::load(dir.string());
  check_close(m(x), want, 0, 0);  // the same compiled graph: bit-identical
  CHECK(m.concrete_function(0).kernel_count() == 1);
  check_close(m(x), kiln::function(layer, kInterpreted)(x), 1e-5, 1e-6);
  fs::remove_all(dir);
}

TEST_CASE("jit: a compiled train step peaks at no more memory than the eager step") {
  random::seed(3);
  Variable w1(random::normal({256, 128}, 0, 0.05), "w1"), b1(zeros({128}), "b1");
  Variable w2(random::normal({128, 10}, 0, 0.1), "w2"), b2(zeros({10}), "b2");
  const std::vector<Variable> params = {w1, b1, w2, b2};
  const Tensor x = random::uniform({512, 256});
  const Tensor labels = random::randint({512}, 0, 10, i32);
  auto step = [&](const Tensor& xb, const Tensor& yb) {
    GradientTape tape;
    Tensor h = relu(matmul(xb, w1) + b1);
    Tensor loss = mean(sparse_softmax_cross_entropy_with_logits(yb, matmul(h, w2) + b2));
    std::vector<Tensor> g = tape.gradient(loss, params);
    for (size_t i = 0; i < params.size(); ++i)
      params[i].assign_sub(g[i] * 0.01f);
    return loss;
  };
  auto peak_of = [&](const std::function<void()>& fn) {
    fn();  // warm up: compile, fill the allocator's cache
    const int64_t before = memory::cpu_stats().live_bytes;
    memory::reset_peak();
    fn();
    return memory::cpu_stats().peak_bytes - before;
  };
  auto compiled = kiln::function(step);
  const int64_t eager_peak = peak_of([&] { step(x, labels); });
  const int64_t compiled_peak = peak_of([&] { compiled(x, labels); });
  INFO("eager " << eager_peak << " bytes, compiled " << compiled_peak << " bytes");
  CHECK(compiled_peak <= eager_peak);
}

TEST_CASE("jit: the MLP train step's kernel count") {
  random::seed(0);
  Variable w1(random::normal({784, 128}, 0, 0.05), "w1"), b1(zeros({128}), "b1");
  Variable w2(random::normal({128, 10}, 0, 0.1), "w2"), b2(zeros({10}), "b2");
  const std::vector<Variable> params = {w1, b1, w2, b2};
  std::vector<Variable> m, v;
  for (const Variable& p : params) {
    m.emplace_back(zeros_like(p.value()), p.name() + "/m");
    v.emplace_back(zeros_like(p.value()), p.name() + "/v");
  }
  auto step = kiln::function([&](const Tensor& x, const Tensor& labels) {
    GradientTape tape;
    Tensor h = relu(matmul(x, w1) + b1);
    Tensor loss = mean(sparse_softmax_cross_entropy_with_logits(labels, matmul(h, w2) + b2));
    std::vector<Tensor> g = tape.gradient(loss, params);
    for (size_t i = 0; i < params.size(); ++i) {
      const AdamUpdate u =
          adam_update(params[i].value(), m[i].value(), v[i].value(), g[i], 1e-3, 0.9, 0.999, 1e-7);
      params[i].assign(u.var);
      m[i].assign(u.m);
      v[i].assign(u.v);
    }
    return loss;
  });
  const Tensor x = random::uniform({128, 784});
  const Tensor labels = random::randint({128}, 0, 10, i32);
  // Library calls: 2 matmul_bias_act (forward, relu fused), 1 matmul (dW1); kernels: 2 row
  // programs (softmax cross-entropy with its gradient, the label pick and the per-example
  // loss, joined through the keepdims reshape between them; the mean over the batch), 2
  // column programs (the bias gradients, one with the relu gradient, the product dh =
  // dlogits w2^T, whose contraction is 10 long, and the weight gradient dW2 = h^T dlogits,
  // summed over the rows), and one in-place update per parameter (adam_update, expanded).
  // The other reshapes and the 2 transposes left are views, which count as nothing.
  CHECK(step.get_concrete_function(x, labels).kernel_count() == 11);
  auto ref = kiln::function(
      [&](const Tensor& x, const Tensor& labels) {
        Tensor h = relu(matmul(x, w1) + b1);
        return mean(sparse_softmax_cross_entropy_with_logits(labels, matmul(h, w2) + b2));
      },
      kInterpreted);
  const float before = ref(x, labels).item<float>();
  for (int i = 0; i < 5; ++i)
    step(x, labels);
  CHECK(ref(x, labels).item<float>() < before);  // it trains
}

TEST_CASE("jit: KILN_CACHE_DIR keeps compiled objects across compiles, and rejects bad ones") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / fmt::format("kiln_cache_{}", ::getpid());
  fs::remove_all(dir);
  ::setenv("KILN_CACHE_DIR", dir.c_str(), 1);
  // A kernel no other test compiles (its constant is unique).
  auto body = [](const Tensor& x) { return tanh(x * 0.123456f) + 7.0f; };
  const Tensor x = rnd({100}, 1);
  const Tensor want = kiln::function(body, kInterpreted)(x);
  auto count_objects = [&] {
    int n = 0;
    for (const auto& e : fs::directory_iterator(dir))
      n += e.path().extension() == ".o";
    return n;
  };
  const auto s0 = jit::cpu::kernel_cache_stats();
  check_close(kiln::function(body)(x), want, 1e-6, 1e-7);
  const auto s1 = jit::cpu::kernel_cache_stats();
  CHECK(s1.compiled == s0.compiled + 1);
  CHECK(count_objects() == 1);
  // Once this process forgets the module, compiling the same graph again (as a new process
  // would) reads the object back from the directory instead of compiling it.
  jit::cpu::forget_loaded_kernels();
  check_close(kiln::function([](const Tensor& t) { return tanh(t * 0.123456f) + 7.0f; })(x), want,
              1e-6, 1e-7);
  const auto s2 = jit::cpu::kernel_cache_stats();
  CHECK(s2.loaded_from_disk == s1.loaded_from_disk + 1);
  CHECK(s2.compiled == s1.compiled);
  // A corrupted file is ignored and rewritten.
  for (const auto& e : fs::directory_iterator(dir)) {
    std::fstream f(e.path(), std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x5a');
  }
  jit::cpu::forget_loaded_kernels();
  check_close(kiln::function([](const Tensor& t) { return tanh(t * 0.123456f) + 7.0f; })(x), want,
              1e-6, 1e-7);
  const auto s3 = jit::cpu::kernel_cache_stats();
  CHECK(s3.compiled == s2.compiled + 1);
  ::unsetenv("KILN_CACHE_DIR");
  fs::remove_all(dir);
}

TEST_CASE("jit: fuzzer-found fusion defects stay fixed") {
  // Minimal programs from the differential fuzzer (test_jit_fuzz), compiled vs interpreted.
  using F = std::function<Tensor(const Tensor&, const Tensor&)>;
  const std::vector<std::tuple<const char*, Shape, Shape, F>> cases = {
      {"column reduction read by its consumer",
       {5, 2},
       {2},
       [](auto& z, auto&) { return maximum(min(z, {0}), z); }},
      {"softmax over axis 0", {6, 3}, {3}, [](auto& z, auto&) { return softmax(z, 0); }},
      {"compare with a column sum",
       {12, 7},
       {7},
       [](auto& z, auto&) { return cast(equal(z, sum(z, {0})), f32); }},
      {"log_softmax over a size-1 axis",
       {6},
       {6},
       [](auto& x, auto&) { return log_softmax(expand_dims(x, 0), -2); }},
      {"per-row value plus a vector",
       {2, 5, 5},
       {5},
       [](auto& x, auto& c) { return sum(x, {2}) + c; }},
      {"row max times a vector, square",
       {3, 3},
       {3},
       [](auto& x, auto& m) { return max(x, {1}, true) * abs(m); }},
      {"row max without keepdims times the input",
       {9, 9},
       {9},
       [](auto& x, auto&) { return max(x, {1}) * x; }},
      {"maximum of abs and a zero (an LLVM 19 InstCombine miscompile of the select form)",
       {8},
       {8},
       [](auto& x, auto&) {
         return maximum(abs(reshape(x, {2, 2, 2})), zeros({1}));
       }},
      {"minimum of a negated abs and a zero",
       {4, 5},
       {5},
       [](auto& x, auto&) { return minimum(-abs(x), zeros({1})) + minimum(abs(x), 0.f); }},
  };
  for (const auto& [name, sx, sy, fn] : cases) {
    INFO(name);
    const Tensor x = rnd(sx, 11), y = rnd(sy, 12);
    check_close(kiln::function(fn)(x, y), kiln::function(fn, kInterpreted)(x, y), 1e-5, 1e-6);
  }
}

TEST_CASE("jit: KILN_PROFILE prints each step's time when the function goes away") {
  namespace fs = std::filesystem;
  const fs::path log = fs::temp_directory_path() / fmt::format("kiln_profile_{}.txt", ::getpid());
  ::setenv("KILN_PROFILE", "1", 1);
  std::fflush(stderr);
  const int saved = ::dup(2);
  FILE* f = std::fopen(log.c_str(), "w");
  REQUIRE(f != nullptr);
  ::dup2(::fileno(f), 2);
  {
    // A graph no other test compiles (its constant is unique), so its Executable is new.
    auto fn = kiln::function(
        [](const Tensor& a, const Tensor& b) { return relu(matmul(a, b) * 0.654321f); });
    for (int i = 0; i < 3; ++i)
      fn(rnd({8, 16}, 1), rnd({16, 4}, 2));
  }
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::fclose(f);
  ::unsetenv("KILN_PROFILE");
  std::ifstream in(log);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  fs::remove(log);
  CHECK(text.find("KILN_PROFILE") != std::string::npos);
  CHECK(text.find("3 calls, the first") != std::string::npos);
  CHECK(text.find("the 2 later ones") != std::string::npos);
  CHECK(text.find("matmul [8,4]") != std::string::npos);
  CHECK(text.find("kernel k0 over [8,4]: mul relu") != std::string::npos);
}

TEST_CASE("jit: outputs larger than the cache stream past it and match the cached path") {
  // Threshold 0: every flat elementwise call takes the streaming entry. Odd sizes start the
  // second thread's chunk mid-line, so its scalar head runs before the aligned vector loop.
  auto chain = [](const Tensor& a, const Tensor& b) { return sigmoid(a * b + 0.5f) * a - b * b; };
  // Two outputs of one size (f64) and a group whose outputs differ in size (no streaming).
  auto two = [](const Tensor& a, const Tensor& b) {
    const Tensor a64 = cast(a, DType::f64), b64 = cast(b, DType::f64);
    return std::vector<Tensor>{exp(a64) - b64, a64 * b64 + 1.0};
  };
  auto mixed = [](const Tensor& a, const Tensor& b) {
    return std::vector<Tensor>{cast(a * b, DType::f64), a - b};
  };
  for (int64_t n : {1, 15, 17, 1000, 100003}) {
    INFO(n);
    const Tensor x = rnd({n}, 21), y = rnd({n}, 22);
    jit::set_stream_threshold(0);
    const Tensor streamed = kiln::function(chain)(x, y);
    const std::vector<Tensor> two_streamed = kiln::function(two)(x, y);
    const std::vector<Tensor> mixed_streamed = kiln::function(mixed)(x, y);
    jit::set_stream_threshold(std::numeric_limits<int64_t>::max());
    // The same code either way: bitwise equal to the cached path.
    check_close(streamed, kiln::function(chain)(x, y), 0, 0);
    const std::vector<Tensor> two_cached = kiln::function(two)(x, y);
    check_close(two_streamed[0], two_cached[0], 0, 0);
    check_close(two_streamed[1], two_cached[1], 0, 0);
    jit::set_stream_threshold(-1);
    // x*y - y*y cancels: the tolerance is absolute at the terms' scale (up to 8).
    check_close(streamed, kiln::function(chain, kInterpreted)(x, y), 1e-6, 2e-6);
    const std::vector<Tensor> two_ref = kiln::function(two, kInterpreted)(x, y);
    check_close(two_streamed[0], two_ref[0], 1e-12, 1e-14);
    check_close(two_streamed[1], two_ref[1], 1e-12, 1e-14);
    const std::vector<Tensor> mixed_ref = kiln::function(mixed, kInterpreted)(x, y);
    check_close(mixed_streamed[0], mixed_ref[0], 0, 0);
    check_close(mixed_streamed[1], mixed_ref[1], 0, 0);
  }
  // The streaming entry's vector stores are non-temporal, fenced before it returns. Outputs
  // known to be smaller than the threshold get no streaming entry at all.
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("kiln_stream_" + std::to_string(getpid()));
  setenv("KILN_DUMP", dir.c_str(), 1);
  jit::set_stream_threshold(0);
  kiln::function(chain, FunctionOptions{.name = "streamed"})(rnd({64}, 1), rnd({64}, 2));
  jit::set_stream_threshold(-1);
  kiln::function(chain, FunctionOptions{.name = "small"})(rnd({48}, 1), rnd({48}, 2));
  unsetenv("KILN_DUMP");
  auto read = [&](const char* file) {
    std::ifstream in(dir / file);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  const std::string s = read("streamed.s"), small = read("small.s");
  std::filesystem::remove_all(dir);
  CHECK(!small.empty());
  CHECK(small.find("_stream:") == std::string::npos);
  const size_t entry = s.find("_stream:");
  REQUIRE(entry != std::string::npos);
  CHECK(s.find("movnt", entry) != std::string::npos);
  CHECK(s.find("sfence", entry) != std::string::npos);
  CHECK(s.find("movnt") > entry);  // the regular entry stores as usual
}
