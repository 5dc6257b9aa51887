// Row programs (reductions along the last axis with their producers and consumers) and
// column programs (reductions over the leading axes), compiled, against the interpreter:
// softmax and layer norm in one kernel, rows of up to 32 elements eight at a time (one per
// vector lane), keepdims reshapes inside a row program, bias gradients, short matmuls inside a
// column program.
#include <unistd.h>

#include <array>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <kiln/kiln.h>

#include "corpus.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::rnd;

namespace {

const FunctionOptions kInterpreted{.name = "ref", .jit_compile = false};

}  // namespace

TEST_CASE("jit: softmax and layer norm are one row program each") {
  auto layer_norm = [](const Tensor& x) {
    Tensor mu = mean(x, {-1}, true);
    Tensor xc = x - mu;
    return xc * rsqrt(mean(xc * xc, {-1}, true) + 1e-5f);
  };
  auto sm = kiln::function([](const Tensor& x) { return softmax(x, -1); });
  auto ln = kiln::function(layer_norm);
  auto lsm = kiln::function([](const Tensor& x) { return log_softmax(x, -1); });
  auto sm_ref = kiln::function([](const Tensor& x) { return softmax(x, -1); }, kInterpreted);
  auto ln_ref = kiln::function(layer_norm, kInterpreted);
  auto lsm_ref = kiln::function([](const Tensor& x) { return log_softmax(x, -1); }, kInterpreted);
  for (const Shape& s : {Shape{37, 101}, Shape{1, 1}, Shape{3, 4, 17}, Shape{64}}) {
    INFO(s.str());
    const Tensor x = rnd(s, 9, -5, 5);
    CHECK(sm.get_concrete_function(x).kernel_count() <= 2);
    CHECK(ln.get_concrete_function(x).kernel_count() <= 2);
    check_close(sm(x), sm_ref(x), 1e-5, 1e-7);
    check_close(ln(x), ln_ref(x), 1e-5, 1e-6);
    check_close(lsm(x), lsm_ref(x), 1e-5, 1e-6);
  }
  CHECK(sm.get_concrete_function(rnd({8, 16}, 1)).kernel_count() == 1);
  CHECK(ln.get_concrete_function(rnd({8, 16}, 1)).kernel_count() == 1);
  // A row holding inf or NaN: max and the sums propagate them as the eager kernels do.
  const float inf = std::numeric_limits<float>::infinity();
  const Tensor special =
      from_vector(std::vector<float>{1.f, inf, 2.f, 3.f, NAN, 0.f, -1.f, 2.f}, {2, 4});
  auto mx = kiln::function([](const Tensor& x) { return max(x, {-1}, true) + sum(x, {-1}, true); });
  auto mx_ref = kiln::function(
      [](const Tensor& x) { return max(x, {-1}, true) + sum(x, {-1}, true); }, kInterpreted);
  const std::vector<float> got = mx(special).to_vector<float>();
  const std::vector<float> want = mx_ref(special).to_vector<float>();
  for (size_t i = 0; i < got.size(); ++i)
    CHECK((got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i]))));
  // A dynamic batch of rows.
  auto dyn = kiln::function([](const Tensor& x) { return softmax(x, -1); },
                            std::vector<TensorSpec>{TensorSpec({-1, 10})});
  for (int64_t b : {1, 7, 128}) {
    const Tensor x = rnd({b, 10}, static_cast<uint32_t>(b));
    check_close(dyn(x), sm_ref(x), 1e-5, 1e-7);
  }
}

TEST_CASE("jit: short rows run eight at a time, one per lane, and match the interpreter") {
  // A softmax cross-entropy with its gradient (full and per-row outputs, a per-row label
  // input, bool intermediates, exp and log), a column bias, tanh and erf; and in f64 the same
  // through libm (one call per lane).
  auto head = [](const Tensor& logits, const Tensor& labels, const Tensor& bias) {
    Tensor z = logits + bias;
    Tensor hit = equal(iota(z.shape(), 1, i32), labels);
    Tensor lse = logsumexp(z, {-1}, true);
    Tensor loss = lse - sum(where(hit, z, 0.f), {-1}, true);
    Tensor grad = exp(z - lse) - cast(hit, f32);
    Tensor mixed = sum(tanh(z) * erf(z), {-1}) + max(abs(z), {-1});
    return std::vector<Tensor>{loss, grad, mixed, softmax(z, -1)};
  };
  auto head64 = [](const Tensor& x, const Tensor& c) {
    Tensor z = x * c;
    return std::vector<Tensor>{log(sum(exp(z), {-1})), softmax(z, -1), max(z, {-1}, true)};
  };
  auto f = kiln::function(head);
  auto ref = kiln::function(head, kInterpreted);
  auto f64fn = kiln::function(head64);
  auto ref64 = kiln::function(head64, kInterpreted);
  // Row counts around the lane count (and 5003, which two threads split at an odd row).
  for (int64_t rows : {1, 7, 8, 9, 23, 5003})
    for (int64_t cols : {1, 3, 10, 32, 33}) {
      INFO(rows << " x " << cols);
      const uint32_t seed = static_cast<uint32_t>(rows * 100 + cols);
      const Tensor x = rnd({rows, cols}, seed, -6, 6);
      const Tensor labels =
          cast(floor(rnd({rows, 1}, seed + 1, 0, static_cast<double>(cols) - 0.01)), i32);
      const Tensor bias = rnd({cols}, seed + 2);
      const auto got = f(x, labels, bias), want = ref(x, labels, bias);
      for (size_t k = 0; k < got.size(); ++k)
        check_close(got[k], want[k], 1e-5, 1e-6);
      const Tensor x64 = cast(x, f64), c64 = cast(rnd({cols}, seed + 3), f64);
      const auto got64 = f64fn(x64, c64), want64 = ref64(x64, c64);
      for (size_t k = 0; k < got64.size(); ++k)
        check_close(got64[k], want64[k], 1e-12, 1e-12);
    }
  // The generated code has the lane loop for rows of up to 32 elements, and only then.
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / fmt::format("kiln_lanes_{}", ::getpid());
  fs::remove_all(dir);
  ::setenv("KILN_DUMP", dir.c_str(), 1);
  auto sm10 = kiln::function([](const Tensor& x) { return softmax(x, -1); }, {.name = "sm10"});
  auto sm33 = kiln::function([](const Tensor& x) { return softmax(x, -1); }, {.name = "sm33"});
  sm10(rnd({16, 10}, 1));
  sm33(rnd({16, 33}, 1));
  ::unsetenv("KILN_DUMP");
  auto text = [&](const char* file) {
    std::ifstream in(dir / file);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  CHECK(text("sm10.ll").find("lane_rows:") != std::string::npos);
  CHECK(text("sm10.ll").find("<8 x float>") != std::string::npos);
  CHECK(text("sm33.ll").find("lane_rows:") == std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("jit: keepdims reshapes of per-row values join their row program") {
  // logsumexp per row as [R, 1], reshaped to [R] and combined with another per-row value,
  // and back to [R, 1] for a full output: one row program.
  auto f = [](const Tensor& x) {
    Tensor lse = logsumexp(x, {-1}, true);                     // [R, 1]
    Tensor per_row = reshape(lse, {x.dim(0)}) - max(x, {-1});  // [R]
    Tensor back = reshape(per_row * 2.f, {x.dim(0), 1});       // [R, 1]
    return std::vector<Tensor>{per_row, x - back};
  };
  auto compiled = kiln::function(f);
  auto ref = kiln::function(f, kInterpreted);
  // 5 columns; 1 column (where [R, 1] is the full shape); and R == C (where [R] is also a
  // row of the columns).
  for (const Shape& s : {Shape{37, 5}, Shape{9, 1}, Shape{6, 6}, Shape{1, 3}}) {
    INFO(s.str());
    const Tensor x = rnd(s, 11, -4, 4);
    const auto got = compiled(x), want = ref(x);
    for (size_t k = 0; k < got.size(); ++k)
      check_close(got[k], want[k], 1e-5, 1e-6);
  }
  CHECK(compiled.get_concrete_function(rnd({37, 5}, 1)).kernel_count() == 1);
  // A reshape that is not per row ([R, C] to [R * C]) stays a step of its own.
  auto flat = kiln::function([](const Tensor& x) { return reshape(exp(x), {-1}) * 2.f; });
  const Tensor x = rnd({4, 5}, 2);
  check_close(flat(x), reshape(exp(x), {-1}) * 2.f, 1e-6, 1e-7);
}

TEST_CASE("jit: column reductions fuse their producers and match the interpreter") {
  auto cols = [](const Tensor& x, const Tensor& y) {
    Tensor e = exp(x) * y;
    return std::vector<Tensor>{sum(e, {0}), max(x - y, {0}, true), min(e, {0}), e};
  };
  auto f = kiln::function(cols);
  auto ref = kiln::function(cols, kInterpreted);
  for (const Shape& s : {Shape{37, 29}, Shape{1, 5}, Shape{200, 3}, Shape{4, 5, 6}}) {
    INFO(s.str());
    const Tensor x = rnd(s, 1), y = rnd(s, 2);
    const auto got = f(x, y), want = ref(x, y);
    for (size_t k = 0; k < got.size(); ++k)
      check_close(got[k], want[k], 1e-5, 1e-6);
  }
  // Two kernels: exp(x) * y with its sum and min, and x - y with its max (sibling groups that
  // share only inputs are not merged).
  CHECK(f.get_concrete_function(rnd({37, 29}, 1), rnd({37, 29}, 2)).kernel_count() == 2);
  // A vector of the column count broadcasts along the rows, also when rows == columns.
  auto square_space = [](const Tensor& m, const Tensor& b, const Tensor& s) {
    Tensor h = tanh(m + b);
    Tensor e = h * (1.0 - h * h) * reshape(s, {1, 1});
    return std::vector<Tensor>{sum(e, {0}, true), e, m - sum(m, {1})};
  };
  const Tensor sq = from_vector(std::vector<double>{0.1, 0.2, 0.3, 0.4}, {2, 2});
  const auto sq_got = kiln::function(square_space)(sq, tensor({0.5, -0.5}), tensor(3.0));
  const auto sq_want =
      kiln::function(square_space, kInterpreted)(sq, tensor({0.5, -0.5}), tensor(3.0));
  for (size_t k = 0; k < sq_got.size(); ++k)
    check_close(sq_got[k], sq_want[k], 1e-12, 1e-12);
  // The bias gradient of a dense layer: one column program.
  auto bias_grad = kiln::function(
      [](const Tensor& g, const Tensor& z) { return sum(where(z > 0.f, g, 0.f), {0}); });
  const Tensor g = rnd({64, 16}, 3), z = rnd({64, 16}, 4);
  CHECK(bias_grad.get_concrete_function(g, z).kernel_count() == 1);
  check_close(bias_grad(g, z), sum(where(z > 0.f, g, 0.f), {0}), 1e-5, 1e-6);
}

TEST_CASE("jit: a weight gradient h^T dy runs inside the column program over h") {
  // A hidden layer's backward pass under a small output layer, as in the MLP step: the
  // program walks h for the relu's gradient and the bias gradient; dW = h^T dy sums over
  // the same rows. dW is read after the program (by dW * 2), and also returned as it is.
  auto backward = [](const Tensor& dy, const Tensor& w, const Tensor& h) {
    Tensor dh = where(h > 0.0, matmul(dy, transpose(w, {1, 0})), 0.0);
    Tensor dw = matmul(transpose(h, {1, 0}), dy);
    return std::vector<Tensor>{dh, sum(dh, {0}), dw * 2.0, dw};
  };
  // H made inside the program: t = tanh(z), read at each element and transposed for dW.
  auto inner = [](const Tensor& dy, const Tensor& w, const Tensor& z) {
    Tensor t = tanh(z);
    Tensor dz = t * matmul(dy, transpose(w, {1, 0}));
    return std::vector<Tensor>{sum(dz, {0}), matmul(transpose(t, {1, 0}), dy)};
  };
  auto f = kiln::function(backward);
  auto ref = kiln::function(backward, kInterpreted);
  auto g = kiln::function(inner);
  auto gref = kiln::function(inner, kInterpreted);
  for (DType dt : {DType::f32, DType::f64}) {
    for (const auto& [m, k, n] :
         {std::array<int64_t, 3>{37, 10, 29}, {1, 1, 5}, {64, 16, 128}, {5, 3, 1}, {130, 7, 9}}) {
      INFO(std::string(name(dt)) << " m " << m << " k " << k << " n " << n);
      const Tensor dy = cast(rnd({m, k}, 1), dt), w = cast(rnd({n, k}, 2), dt),
                   h = cast(rnd({m, n}, 3), dt);
      const auto got = f(dy, w, h), want = ref(dy, w, h);
      const double tol = dt == DType::f32 ? 1e-5 : 1e-12;
      for (size_t i = 0; i < got.size(); ++i)
        check_close(got[i], want[i], tol, tol);
      // The program and the kernel of dW * 2: no library call.
      const ConcreteFunction cf = f.get_concrete_function(dy, w, h);
      INFO(cf.ir(IRStage::optimized));
      CHECK(cf.kernel_count() == 2);
      // dW independently, in f64 loops.
      const auto a = cast(dy, DType::f64).to_vector<double>(),
                 c = cast(h, DType::f64).to_vector<double>();
      std::vector<double> dw(static_cast<size_t>(n * k), 0.0);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j)
          for (int64_t q = 0; q < k; ++q)
            dw[static_cast<size_t>(j * k + q)] +=
                c[static_cast<size_t>(i * n + j)] * a[static_cast<size_t>(i * k + q)];
      check_close(cast(got[3], DType::f64), from_vector(dw, {n, k}), tol * 10, tol * 10);
      const auto ig = g(dy, w, h), iw = gref(dy, w, h);
      check_close(ig[0], iw[0], tol, tol);
      check_close(ig[1], iw[1], tol, tol);
      CHECK(g.get_concrete_function(dy, w, h).kernel_count() == 1);
    }
  }
  // Wide: 300 columns, 18 blocks of 16 and 12 left over, 16 sums each.
  const Tensor dy = rnd({8, 16}, 1), w = rnd({300, 16}, 2), h = rnd({8, 300}, 3);
  CHECK(f.get_concrete_function(dy, w, h).kernel_count() == 2);
  const auto got = f(dy, w, h), want = ref(dy, w, h);
  for (size_t i = 0; i < got.size(); ++i)
    check_close(got[i], want[i], 1e-5, 1e-5);
  // More than kMaxFusedContraction sums per column (17): both products stay calls.
  const Tensor dy17 = rnd({8, 17}, 1), w17 = rnd({30, 17}, 2), h17 = rnd({8, 30}, 3);
  CHECK(f.get_concrete_function(dy17, w17, h17).kernel_count() == 4);
  check_close(f(dy17, w17, h17)[3], ref(dy17, w17, h17)[3], 1e-5, 1e-5);
}

TEST_CASE("jit: a matmul with a short contraction runs inside the column program after it") {
  // A hidden layer's backward pass under a small output layer: dz = relu'(z) * (dy W^T) and
  // the bias gradient, sum(dz, 0).
  auto backward = [](const Tensor& dy, const Tensor& w, const Tensor& z) {
    Tensor dz = where(z > 0.0, matmul(dy, transpose(w, {1, 0})), 0.0);
    return std::vector<Tensor>{dz, sum(dz, {0})};
  };
  auto f = kiln::function(backward);
  auto ref = kiln::function(backward, kInterpreted);
  for (DType dt : {DType::f32, DType::f64}) {
    for (const auto& [m, k, n] :
         {std::array<int64_t, 3>{37, 10, 29}, {1, 1, 5}, {64, 16, 128}, {5, 3, 1}, {130, 7, 9}}) {
      INFO(std::string(name(dt)) << " m " << m << " k " << k << " n " << n);
      const Tensor dy = cast(rnd({m, k}, 1), dt), w = cast(rnd({n, k}, 2), dt),
                   z = cast(rnd({m, n}, 3), dt);
      const auto got = f(dy, w, z), want = ref(dy, w, z);
      const double tol = dt == DType::f32 ? 1e-5 : 1e-12;
      check_close(got[0], want[0], tol, tol);
      check_close(got[1], want[1], tol, tol);
      CHECK(f.get_concrete_function(dy, w, z).kernel_count() == 1);
      // Independently, in f64 loops.
      const auto a = cast(dy, DType::f64).to_vector<double>(),
                 b = cast(w, DType::f64).to_vector<double>(),
                 c = cast(z, DType::f64).to_vector<double>();
      std::vector<double> dz(static_cast<size_t>(m * n)), db(static_cast<size_t>(n), 0.0);
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t q = 0; q < k; ++q)
            s += a[static_cast<size_t>(i * k + q)] * b[static_cast<size_t>(j * k + q)];
          const double v = c[static_cast<size_t>(i * n + j)] > 0 ? s : 0.0;
          dz[static_cast<size_t>(i * n + j)] = v;
          db[static_cast<size_t>(j)] += v;
        }
      check_close(cast(got[0], DType::f64), from_vector(dz, {m, n}), tol, tol);
      check_close(cast(got[1], DType::f64), from_vector(db, {n}), tol * 10, tol * 10);
    }
  }
  // Longer contractions stay library calls; so does a product that is also a result.
  const Tensor dy = rnd({8, 17}, 1), w = rnd({6, 17}, 2), z = rnd({8, 6}, 3);
  CHECK(f.get_concrete_function(dy, w, z).kernel_count() == 2);
  auto kept = kiln::function([](const Tensor& x, const Tensor& w) {
    Tensor p = matmul(x, w);
    return std::vector<Tensor>{p, sum(exp(p), {0})};
  });
  const Tensor x = rnd({9, 4}, 5), w4 = rnd({4, 7}, 6);
  CHECK(kept.get_concrete_function(x, w4).kernel_count() == 2);
  const auto kept_got = kept(x, w4);
  check_close(kept_got[1], sum(exp(matmul(x, w4)), {0}), 1e-5, 1e-6);
  // An operand read in place of a transposed one, and an unknown batch dim (the product stays
  // a call).
  auto plain =
      kiln::function([](const Tensor& x, const Tensor& w) { return sum(tanh(matmul(x, w)), {0}); });
  CHECK(plain.get_concrete_function(x, w4).kernel_count() == 1);
  check_close(plain(x, w4), sum(tanh(matmul(x, w4)), {0}), 1e-5, 1e-6);
  auto dynamic =
      kiln::function([](const Tensor& x, const Tensor& w) { return sum(tanh(matmul(x, w)), {0}); },
                     std::vector<TensorSpec>{TensorSpec({-1, 4}), TensorSpec({4, 7})});
  CHECK(dynamic.get_concrete_function(x, w4).kernel_count() == 2);
  check_close(dynamic(x, w4), sum(tanh(matmul(x, w4)), {0}), 1e-5, 1e-6);
  // A product of a product: the outer one joins the program, the inner one, which the outer
  // reads by row and by column, stays a call (it crashed the emitter: fuzzer seed
  // 1795741687542, a softmax over the rows of matmul(matmul(x, w), v)).
  auto chained = kiln::function([](const Tensor& x, const Tensor& w, const Tensor& v) {
    return sum(exp(matmul(matmul(x, w), v)), {0});
  });
  for (const auto& [m, k, n] : {std::array<int64_t, 3>{1, 1, 1}, {9, 4, 7}, {6, 16, 3}}) {
    INFO("m " << m << " k " << k << " n " << n);
    const Tensor xc = rnd({m, k}, 7), wc = rnd({k, n}, 8), vc = rnd({n, k}, 9);
    CHECK(chained.get_concrete_function(xc, wc, vc).kernel_count() == 2);
    // Independently, in f64 loops.
    const auto a = cast(xc, DType::f64).to_vector<double>(),
               b = cast(wc, DType::f64).to_vector<double>(),
               c = cast(vc, DType::f64).to_vector<double>();
    std::vector<double> want(static_cast<size_t>(k), 0.0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < k; ++j) {
        double s = 0;
        for (int64_t q = 0; q < n; ++q) {
          double p = 0;
          for (int64_t t = 0; t < k; ++t)
            p += a[static_cast<size_t>(i * k + t)] * b[static_cast<size_t>(t * n + q)];
          s += p * c[static_cast<size_t>(q * k + j)];
        }
        want[static_cast<size_t>(j)] += std::exp(s);
      }
    check_close(cast(chained(xc, wc, vc), DType::f64), from_vector(want, {k}), 1e-5, 1e-5);
  }
  // The fuzzer's program: a softmax over the rows of a [1, 1] product of a product.
  auto softmax_rows = kiln::function([](const Tensor& x, const Tensor& w, const Tensor& v) {
    return softmax(matmul(matmul(x, w), v), 0);
  });
  const Tensor one = rnd({1, 1}, 10);
  check_close(softmax_rows(one, one, one), full({1, 1}, 1.f), 1e-6, 1e-6);
}
