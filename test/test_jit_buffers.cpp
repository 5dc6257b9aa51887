// Buffer assignment: the per-call arena, in-place elementwise kernels, and what must never
// happen with either (a caller's tensor overwritten, a result or variable left in a freed
// arena).
#include <omp.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include <kiln/core/arena.h>
#include <kiln/kiln.h>

#include "testing.h"

using namespace kiln;
using kiln::testing::check_close;

namespace {

// The most bytes live at once while fn runs, above what was live before (after a warm-up).
int64_t peak_of(const std::function<void()>& fn) {
  fn();
  const int64_t before = memory::cpu_stats().live_bytes;
  memory::reset_peak();
  fn();
  return memory::cpu_stats().peak_bytes - before;
}

}  // namespace

TEST_CASE("arena: allocations in a scope come from one block, and outlive it safely") {
  memory::empty_cache();
  const int64_t allocs_before = memory::cpu_stats().allocations;
  Tensor kept;
  {
    memory::ArenaScope scope(1 << 20);
    Tensor a = ones({100, 100});  // 40 KB: from the arena
    Tensor b = a * 3;
    CHECK(scope.owns(a.raw_data()));
    CHECK(scope.owns(b.raw_data()));
    kept = b;                       // outlives the scope: the block stays until it is freed
    Tensor big = zeros({1 << 19});  // 2 MB: no room, the usual path
    CHECK_FALSE(scope.owns(big.raw_data()));
    {
      memory::ArenaScope::Pause pause;
      Tensor c = ones({10});
      CHECK_FALSE(scope.owns(c.raw_data()));
    }
    CHECK(scope.high_water() >= 2 * 40000);
  }
  // One block for the arena (plus the big tensor and the paused one), not one per tensor.
  CHECK(memory::cpu_stats().allocations - allocs_before <= 3);
  check_close(sum(kept), {30000.0});
}

TEST_CASE("in place: an elementwise kernel writes over a matmul output that dies there") {
  random::seed(4);
  const Tensor x = random::normal({512, 256}), w = random::normal({256, 512}, 0, 0.05);
  auto f = kiln::function(
      [](const Tensor& a, const Tensor& b) { return tanh(matmul(a, b)) * 2.f + 1.f; });
  auto g = kiln::function(
      [](const Tensor& a, const Tensor& b) { return tanh(matmul(a, b)) * 2.f + 1.f; },
      FunctionOptions{.jit_compile = false});
  check_close(f(x, w), g(x, w), 1e-5, 1e-6);
  const int64_t y_bytes = 512 * 512 * 4;
  const int64_t compiled = peak_of([&] { f(x, w); });
  const int64_t eager = peak_of([&] { tanh(matmul(x, w)) * 2.f + 1.f; });
  INFO("compiled " << compiled << " bytes, eager " << eager << " bytes, y " << y_bytes);
  // The result is the matmul's buffer, rewritten: one buffer of y's size at the peak.
  CHECK(compiled < y_bytes + y_bytes / 2);
  CHECK(eager >= 2 * y_bytes);
}

TEST_CASE("in place: the kernel's in-place version is vectorized too") {
  // Overlapping pointers would send LLVM's vectorizer to its scalar loop: the kernel has a
  // version whose stores use the input's own pointer, which it vectorizes.
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("kiln_in_place_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  ::setenv("KILN_DUMP", dir.c_str(), 1);
  auto f = kiln::function(
      [](const Tensor& a, const Tensor& b) { return tanh(matmul(a, b)) * 2.f + 1.f; },
      {.name = "in_place_tanh"});
  const Tensor a = random::normal({64, 8}), b = random::normal({8, 64});
  const Tensor got = f(a, b);
  ::unsetenv("KILN_DUMP");
  check_close(got, tanh(matmul(a, b)) * 2.f + 1.f, 1e-5, 1e-6);
  std::ifstream in(dir / "in_place_tanh.ll");
  const std::string ll(std::istreambuf_iterator<char>(in), {});
  const size_t split = ll.find("\nseparate:");
  REQUIRE(ll.find("\nin_place:") != std::string::npos);
  REQUIRE(split != std::string::npos);
  // Both versions have a vector loop.
  size_t loops = 0;
  for (size_t at = ll.find("\nvector.body"); at != std::string::npos;
       at = ll.find("\nvector.body", at + 1))
    ++loops;
  CHECK(loops >= 2);
  fs::remove_all(dir);
}

TEST_CASE("in place never writes over a caller's tensor or a result still in use") {
  const Tensor x = tensor({0.5f, -1.f, 2.f, 3.f});
  const std::vector<float> before = x.to_vector<float>();
  auto f = kiln::function([](const Tensor& a) { return exp(a) * 2.f; });
  Tensor y = f(x);
  CHECK(x.to_vector<float>() == before);
  check_close(y, {2 * std::exp(0.5), 2 * std::exp(-1.0), 2 * std::exp(2.0), 2 * std::exp(3.0)},
              1e-6);
  // The matmul output is a result too: the kernel must not write over it.
  auto both = kiln::function([](const Tensor& a, const Tensor& b) {
    Tensor m = matmul(a, b);
    return std::vector<Tensor>{m, m * 2.f + 1.f};
  });
  const Tensor a = tensor({{1.f, 2.f}, {3.f, 4.f}});
  std::vector<Tensor> r = both(a, a);
  check_close(r[0], {7, 10, 15, 22});
  check_close(r[1], {15, 21, 31, 45});
}

TEST_CASE("arena: results and variables stay valid over many calls from four threads") {
  random::seed(9);
  Variable w(random::normal({64, 64}, 0, 0.1), "w");
  auto step = kiln::function([&](const Tensor& x) {
    Tensor h = relu(matmul(x, w));
    Tensor out = softmax(h * 2.f) + 1.f;
    return out;
  });
  const Tensor x = random::normal({32, 64});
  const Tensor expected = softmax(relu(matmul(x, w)) * 2.f) + 1.f;
  std::vector<std::thread> threads;
  std::vector<std::vector<Tensor>> kept(4);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i)
        kept[static_cast<size_t>(t)].push_back(step(x));
    });
  for (auto& th : threads)
    th.join();
  // Every result ever returned still holds its values (no arena reused under it).
  for (const auto& list : kept)
    for (const Tensor& r : list)
      check_close(r, expected, 1e-5, 1e-6);

  // A train step: new variable values are never carved from a call's arena.
  Variable v(ones({256, 256}), "v");
  auto update = kiln::function([&](const Tensor& g) {
    v.assign(v.value() - g * 0.5f);
    return sum(v.value());
  });
  const Tensor g = ones({256, 256});
  for (int i = 0; i < 3; ++i)
    update(g);
  check_close(v.value().slice(0, 0, 1).slice(1, 0, 2), {-0.5, -0.5});
}

TEST_CASE("donation: an update writes over its variable's buffer, never over a held value") {
  Variable w(ones({4096}), "w");
  auto step = kiln::function([&](const Tensor& g) {
    w.assign(w.value() - g * 0.5f);
    return sum(w.value());
  });
  const Tensor g = ones({4096});
  step(g);  // compile
  // Nothing else holds the buffer: the update lands in place.
  const void* before = w.value().raw_data();
  check_close(step(g), {0.0});  // w: 1 -> 0.5 (the first call) -> 0
  CHECK(w.value().raw_data() == before);
  // A caller holding the old value keeps it: the update goes to a new buffer.
  const Tensor held = w.value();
  check_close(step(g), {4096 * -0.5});
  check_close(sum(held), {0.0});
  CHECK(w.value().raw_data() != held.raw_data());
  // A read of the old value that outlives the update is never overwritten either.
  Variable v(ones({1024}), "v");
  auto both = kiln::function([&](const Tensor& d) {
    Tensor old = v.value();
    v.assign(old + d);
    return old * 1.f + 0.f;  // the old value, read after the assign
  });
  const Tensor d = full({1024}, 2.f);
  check_close(sum(both(d)), {1024.0});
  check_close(sum(both(d)), {3 * 1024.0});
  check_close(sum(v.value()), {5 * 1024.0});
}

TEST_CASE("adam_update compiles to one kernel that updates var, m and v in place") {
  for (DType dt : {f32, f64}) {
    CAPTURE(name(dt));
    const Tensor init = random::uniform({333, 7}, -1.0, 1.0, dt);
    const Tensor g = random::normal({333, 7}, 0.0, 1.0, dt);
    Variable w(init, "w"), m(zeros_like(init), "m"), v(zeros_like(init), "v");
    auto step = kiln::function([&](const Tensor& grad) {
      const AdamUpdate u =
          adam_update(w.value(), m.value(), v.value(), grad, 1e-2, 0.9, 0.999, 1e-7);
      w.assign(u.var);
      m.assign(u.m);
      v.assign(u.v);
      return sum(u.var);
    });
    const ConcreteFunction cf = step.get_concrete_function(g);
    CHECK(cf.kernel_count() == 2);  // the update and the sum
    const std::string ir = cf.ir(IRStage::optimized);
    CHECK(ir.find("call adam_update") == std::string::npos);
    CHECK(ir.find("sqrt add div sub -> ") != std::string::npos);
    // The same three steps through the eager fused kernel.
    Tensor ew = init, em = zeros_like(init), ev = zeros_like(init);
    for (int i = 0; i < 3; ++i) {
      const AdamUpdate u =
          adam_update(ew, em, ev, g * static_cast<double>(i + 1), 1e-2, 0.9, 0.999, 1e-7);
      ew = u.var;
      em = u.m;
      ev = u.v;
    }
    step(g);
    const void* wb = w.value().raw_data();
    const void* mb = m.value().raw_data();
    const void* vb = v.value().raw_data();
    step(g * 2.0);
    step(g * 3.0);
    CHECK(w.value().raw_data() == wb);
    CHECK(m.value().raw_data() == mb);
    CHECK(v.value().raw_data() == vb);
    // A multiply-add may contract into an FMA in the generated kernel: a few ulps apart.
    const double tol = dt == f32 ? 1e-6 : 1e-14;
    check_close(w.value(), ew, tol, tol);
    check_close(m.value(), em, tol, tol);
    check_close(v.value(), ev, tol, tol);
  }
}

TEST_CASE("product epilogue: a large product runs with its one elementwise reader, by rows") {
  random::seed(21);
  auto paired = [](const ConcreteFunction& cf) {
    return cf.ir(IRStage::optimized).find("row blocks into the next kernel") != std::string::npos;
  };
  // An odd row count, so the threads' blocks differ in size.
  const Tensor x = random::normal({301, 200}), w = random::normal({200, 64}, 0, 0.1),
               c = random::normal({301, 64});
  auto fn = [](const Tensor& a, const Tensor& b, const Tensor& k) {
    return tanh(matmul(a, b)) * k + 1.f;
  };
  auto compiled = kiln::function(fn);
  auto interpreted = kiln::function(fn, FunctionOptions{.jit_compile = false});
  // Sums of 200 terms near 0.1 in size, blocked differently from the eager product's.
  const Tensor y = compiled(x, w, c);
  check_close(y, interpreted(x, w, c), 1e-5, 2e-5);
  check_close(y, fn(x, w, c), 1e-5, 2e-5);
  const ConcreteFunction cf = compiled.get_concrete_function(x, w, c);
  INFO(cf.ir(IRStage::optimized));
  CHECK(cf.kernel_count() == 2);
  CHECK(paired(cf));

  SECTION("a weight gradient x^T dy feeding Adam on its variable, in place") {
    const Tensor xb = random::normal({128, 300}), init = random::normal({300, 96}, 0, 0.1);
    Variable wv(init, "w"), m(zeros_like(init), "m"), v(zeros_like(init), "v");
    auto step = kiln::function([&](const Tensor& xs, const Tensor& dy) {
      const Tensor grad = matmul(transpose(xs, {1, 0}), dy);
      const AdamUpdate u =
          adam_update(wv.value(), m.value(), v.value(), grad, 1e-2, 0.9, 0.999, 1e-7);
      wv.assign(u.var);
      m.assign(u.m);
      v.assign(u.v);
      return sum(u.var);
    });
    Tensor ew = init, em = zeros_like(init), ev = zeros_like(init);
    std::vector<const void*> first;
    // Twelve calls: each thread's rows are updated in chunks of 42, and a thread done early
    // takes over the other's last chunks; an update applied twice or never would show.
    for (int i = 0; i < 12; ++i) {
      const Tensor dy = random::normal({128, 96});
      step(xb, dy);
      // Each new value takes its own variable's buffer, not the dying gradient's (which
      // would move that variable to a new buffer on every call).
      const std::vector<const void*> now{wv.value().raw_data(), m.value().raw_data(),
                                         v.value().raw_data()};
      if (i == 0) first = now;
      CHECK(now == first);
      const AdamUpdate u =
          adam_update(ew, em, ev, matmul(transpose(xb, {1, 0}), dy), 1e-2, 0.9, 0.999, 1e-7);
      ew = u.var;
      em = u.m;
      ev = u.v;
    }
    CHECK(paired(step.get_concrete_function(xb, random::normal({128, 96}))));
    check_close(wv.value(), ew, 1e-5, 1e-6);
    check_close(m.value(), em, 1e-5, 1e-6);
    check_close(v.value(), ev, 1e-5, 1e-6);
  }
  SECTION("an operand oneDNN cannot take as it is: the product runs first, then the kernel") {
    // Every other column: the matmul kernel copies it, so the two run one after the other.
    const Tensor wide = random::normal({301, 400});
    auto strided = [](const Tensor& a, const Tensor& b, const Tensor& k) {
      return tanh(matmul(slice(a, 1, 0, 400, 2), b)) * k + 1.f;
    };
    auto sc = kiln::function(strided);
    check_close(sc(wide, w, c), strided(wide, w, c), 1e-5, 2e-5);
    CHECK(paired(sc.get_concrete_function(wide, w, c)));
  }
  SECTION("not paired: a product read twice, a small one, a kernel that broadcasts") {
    auto twice = kiln::function([](const Tensor& a, const Tensor& b) {
      const Tensor p = matmul(a, b);
      return std::vector<Tensor>{p, tanh(p)};
    });
    CHECK_FALSE(paired(twice.get_concrete_function(x, w)));
    const Tensor xs = random::normal({30, 20}), ws = random::normal({20, 16});
    auto small =
        kiln::function([](const Tensor& a, const Tensor& b) { return tanh(matmul(a, b)); });
    CHECK_FALSE(paired(small.get_concrete_function(xs, ws)));
    const Tensor bias = random::normal({64});
    auto broadcast = kiln::function(
        [](const Tensor& a, const Tensor& b, const Tensor& k) { return tanh(matmul(a, b) * k); });
    const ConcreteFunction bc = broadcast.get_concrete_function(x, w, bias);
    CHECK_FALSE(paired(bc));
    check_close(broadcast(x, w, bias), tanh(matmul(x, w) * bias), 1e-5, 2e-5);
  }
}

TEST_CASE("split contraction: a trained weight's product splits its contraction, not its rows") {
  random::seed(22);
  // An odd contraction (301), so the threads' blocks of w's rows differ in size, and a bias
  // and relu to apply after the blocks' partial products are summed.
  const int64_t M = 97, K = 301, N = 64;
  const Tensor init = random::normal({K, N}, 0, 0.1), bias = random::normal({N}, 0, 0.1);
  Variable w(init, "w"), b(bias, "b");
  auto step = kiln::function([&](const Tensor& x, const Tensor& dy) {
    const Tensor h = relu(matmul(x, w.value()) + b.value());
    w.assign(w.value() - 0.01f * matmul(transpose(x, {1, 0}), dy * h));
    return h;
  });
  Tensor ew = init;
  for (int i = 0; i < 3; ++i) {
    const Tensor x = random::normal({M, K}), dy = random::normal({M, N});
    const Tensor h = step(x, dy);
    // The forward in f64 loops, from the weight before this call's update.
    const std::vector<double> xv = x.to_vector<double>(), wv = ew.to_vector<double>(),
                              bv = bias.to_vector<double>();
    std::vector<double> ref(static_cast<size_t>(M * N));
    for (int64_t r = 0; r < M; ++r)
      for (int64_t c = 0; c < N; ++c) {
        double acc = bv[static_cast<size_t>(c)];
        for (int64_t k = 0; k < K; ++k)
          acc += xv[static_cast<size_t>(r * K + k)] * wv[static_cast<size_t>(k * N + c)];
        ref[static_cast<size_t>(r * N + c)] = std::max(acc, 0.0);
      }
    // Sums of 301 terms of about 0.1 in size.
    check_close(h, ref, 1e-5, 1e-5);
    ew = ew - 0.01f * matmul(transpose(x, {1, 0}), dy * relu(matmul(x, ew) + bias));
    check_close(w.value(), ew, 1e-5, 1e-6);
  }
  const ConcreteFunction cf = step.get_concrete_function(random::normal({M, K}), zeros({M, N}));
  INFO(cf.ir(IRStage::optimized));
  const bool split =
      cf.ir(IRStage::optimized).find("contraction split across 2 threads") != std::string::npos;
  // Split only where there are threads to split it across.
  CHECK(split == (omp_get_max_threads() > 1));

  SECTION("a product of a weight the function only reads keeps its rows split") {
    auto infer =
        kiln::function([&](const Tensor& x) { return relu(matmul(x, w.value()) + b.value()); });
    const Tensor x = random::normal({M, K});
    check_close(infer(x), relu(matmul(x, w.value()) + bias), 1e-5, 1e-5);
    CHECK(infer.get_concrete_function(x).ir(IRStage::optimized).find("contraction split") ==
          std::string::npos);
  }
}
