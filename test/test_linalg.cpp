// matmul, conv2d and pooling: hand-worked cases, random cases against plain f64 loops written
// here (not with Kiln), views, broadcasting, dtypes, error text and the oneDNN primitive cache.

#include <limits>
#include <random>

#include <kiln/backends/cpu/onednn.h>

#include "testing.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::check_error;

namespace {

std::vector<double> random_values(int64_t n, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<double> v(static_cast<size_t>(n));
  for (auto& x : v)
    x = dist(gen);
  return v;
}

Tensor make(const std::vector<double>& v, const Shape& s, DType dt) {
  return from_vector(v, s).to(dt);
}

// out[b, m, n] = sum_k a[ia(b), m, k] * b[ib(b), k, n]: batch index maps given by the test.
template <class IA, class IB>
std::vector<double> ref_matmul(const std::vector<double>& a, const std::vector<double>& b,
                               int64_t B, int64_t M, int64_t K, int64_t N, IA ia, IB ib) {
  std::vector<double> out(static_cast<size_t>(B * M * N), 0.0);
  for (int64_t bi = 0; bi < B; ++bi)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k)
          s += a[static_cast<size_t>((ia(bi) * M + m) * K + k)] *
               b[static_cast<size_t>((ib(bi) * K + k) * N + n)];
        out[static_cast<size_t>((bi * M + m) * N + n)] = s;
      }
  return out;
}

std::vector<double> ref_mm(const std::vector<double>& a, const std::vector<double>& b, int64_t M,
                           int64_t K, int64_t N) {
  return ref_matmul(
      a, b, 1, M, K, N, [](int64_t) { return 0; }, [](int64_t) { return 0; });
}

std::vector<double> transpose_values(const std::vector<double>& v, int64_t R, int64_t C) {
  std::vector<double> t(v.size());
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c)
      t[static_cast<size_t>(c * R + r)] = v[static_cast<size_t>(r * C + c)];
  return t;
}

// TensorFlow conv2d (NHWC, HWIO) and pooling in plain loops.
struct Geo {
  int64_t oh, ow, pt, pl;
};
Geo tf_geometry(int64_t H, int64_t W, int64_t KH, int64_t KW, std::vector<int64_t> s,
                std::vector<int64_t> d, bool same) {
  const int64_t eh = (KH - 1) * d[0] + 1, ew = (KW - 1) * d[1] + 1;
  Geo g;
  if (same) {
    g.oh = (H + s[0] - 1) / s[0];
    g.ow = (W + s[1] - 1) / s[1];
    g.pt = std::max<int64_t>((g.oh - 1) * s[0] + eh - H, 0) / 2;
    g.pl = std::max<int64_t>((g.ow - 1) * s[1] + ew - W, 0) / 2;
  } else {
    g.oh = (H - eh) / s[0] + 1;
    g.ow = (W - ew) / s[1] + 1;
    g.pt = g.pl = 0;
  }
  return g;
}

std::vector<double> ref_conv(const std::vector<double>& x, const std::vector<double>& w, int64_t N,
                             int64_t H, int64_t W, int64_t C, int64_t KH, int64_t KW, int64_t O,
                             std::vector<int64_t> s, std::vector<int64_t> d, bool same,
                             Shape* out_shape) {
  const Geo g = tf_geometry(H, W, KH, KW, s, d, same);
  *out_shape = Shape{N, g.oh, g.ow, O};
  std::vector<double> y(static_cast<size_t>(N * g.oh * g.ow * O), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < g.oh; ++oh)
      for (int64_t ow = 0; ow < g.ow; ++ow)
        for (int64_t o = 0; o < O; ++o) {
          double acc = 0;
          for (int64_t kh = 0; kh < KH; ++kh)
            for (int64_t kw = 0; kw < KW; ++kw) {
              const int64_t ih = oh * s[0] + kh * d[0] - g.pt, iw = ow * s[1] + kw * d[1] - g.pl;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
              for (int64_t c = 0; c < C; ++c)
                acc += x[static_cast<size_t>(((n * H + ih) * W + iw) * C + c)] *
                       w[static_cast<size_t>(((kh * KW + kw) * C + c) * O + o)];
            }
          y[static_cast<size_t>(((n * g.oh + oh) * g.ow + ow) * O + o)] = acc;
        }
  return y;
}

std::vector<double> ref_pool(const std::vector<double>& x, int64_t N, int64_t H, int64_t W,
                             int64_t C, int64_t KH, int64_t KW, std::vector<int64_t> s, bool same,
                             bool is_max, Shape* out_shape) {
  const Geo g = tf_geometry(H, W, KH, KW, s, {1, 1}, same);
  *out_shape = Shape{N, g.oh, g.ow, C};
  std::vector<double> y;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < g.oh; ++oh)
      for (int64_t ow = 0; ow < g.ow; ++ow)
        for (int64_t c = 0; c < C; ++c) {
          double mx = -1e300, sum = 0;
          int count = 0;
          for (int64_t kh = 0; kh < KH; ++kh)
            for (int64_t kw = 0; kw < KW; ++kw) {
              const int64_t ih = oh * s[0] + kh - g.pt, iw = ow * s[1] + kw - g.pl;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
              const double v = x[static_cast<size_t>(((n * H + ih) * W + iw) * C + c)];
              mx = std::max(mx, v);
              sum += v;
              ++count;
            }
          y.push_back(is_max ? mx : sum / count);
        }
  return y;
}

}  // namespace

TEST_CASE("matmul: hand-worked 2x3 @ 3x2", "[linalg]") {
  for (DType dt : {f32, f64, i32, i64}) {
    Tensor a = make({1, 2, 3, 4, 5, 6}, Shape{2, 3}, dt);
    Tensor b = make({7, 8, 9, 10, 11, 12}, Shape{3, 2}, dt);
    Tensor c = matmul(a, b);
    CHECK(c.dtype() == dt);
    CHECK(c.shape() == Shape{2, 2});
    check_close(c, {58, 64, 139, 154});
  }
}

TEST_CASE("matmul: random f32 and f64 against f64 loops", "[linalg]") {
  const std::vector<std::array<int64_t, 3>> sizes = {{1, 1, 1},    {3, 5, 7},      {17, 33, 9},
                                                     {64, 64, 64}, {100, 70, 130}, {1, 257, 31}};
  uint32_t seed = 1;
  for (auto [M, K, N] : sizes) {
    auto av = random_values(M * K, seed++), bv = random_values(K * N, seed++);
    auto ref = ref_mm(av, bv, M, K, N);
    check_close(matmul(make(av, Shape{M, K}, f32), make(bv, Shape{K, N}, f32)), ref, 1e-4, 1e-4);
    check_close(matmul(make(av, Shape{M, K}, f64), make(bv, Shape{K, N}, f64)), ref, 1e-12, 1e-12);
  }
}

TEST_CASE("matmul: transposed views are read in place", "[linalg]") {
  const int64_t M = 19, K = 23, N = 11;
  auto av = random_values(M * K, 7), bv = random_values(K * N, 8);
  auto ref = ref_mm(av, bv, M, K, N);
  for (DType dt : {f32, f64}) {
    const double tol = dt == f32 ? 1e-4 : 1e-12;
    Tensor at = make(transpose_values(av, M, K), Shape{K, M}, dt).transpose();  // [M,K] view
    Tensor bt = make(transpose_values(bv, K, N), Shape{N, K}, dt).transpose();  // [K,N] view
    Tensor a = make(av, Shape{M, K}, dt), b = make(bv, Shape{K, N}, dt);
    REQUIRE(!at.is_contiguous());
    check_close(matmul(at, b), ref, tol, tol);
    check_close(matmul(a, bt), ref, tol, tol);
    check_close(matmul(at, bt), ref, tol, tol);
  }
}

TEST_CASE("matmul: batched and broadcast batch dims", "[linalg]") {
  // [2,1,3,4] @ [5,4,2] -> [2,5,3,2]
  auto av = random_values(2 * 3 * 4, 11), bv = random_values(5 * 4 * 2, 12);
  auto ref = ref_matmul(
      av, bv, 10, 3, 4, 2, [](int64_t b) { return b / 5; }, [](int64_t b) { return b % 5; });
  for (DType dt : {f32, f64}) {
    Tensor c = matmul(make(av, Shape{2, 1, 3, 4}, dt), make(bv, Shape{5, 4, 2}, dt));
    CHECK(c.shape() == Shape{2, 5, 3, 2});
    check_close(c, ref, 1e-5, 1e-5);
  }
  // A weight shared by the batch: [4,6,8] @ [8,5] (folds into one 2-D product).
  auto xv = random_values(4 * 6 * 8, 13), wv = random_values(8 * 5, 14);
  auto ref2 = ref_matmul(
      xv, wv, 4, 6, 8, 5, [](int64_t b) { return b; }, [](int64_t) { return 0; });
  for (DType dt : {f32, f64}) {
    Tensor c = matmul(make(xv, Shape{4, 6, 8}, dt), make(wv, Shape{8, 5}, dt));
    CHECK(c.shape() == Shape{4, 6, 5});
    check_close(c, ref2, 1e-5, 1e-5);
  }
  // [8,5]-shaped a shared across b's batch: [6,8] @ [3,8,5].
  auto pv = random_values(6 * 8, 15), qv = random_values(3 * 8 * 5, 16);
  auto ref3 = ref_matmul(
      pv, qv, 3, 6, 8, 5, [](int64_t) { return 0; }, [](int64_t b) { return b; });
  for (DType dt : {f32, f64}) {
    Tensor c = matmul(make(pv, Shape{6, 8}, dt), make(qv, Shape{3, 8, 5}, dt));
    CHECK(c.shape() == Shape{3, 6, 5});
    check_close(c, ref3, 1e-5, 1e-5);
  }
  // Batched transposed view: [3,K,M] -> transpose -> [3,M,K].
  auto tv = random_values(3 * 7 * 4, 17), uv = random_values(3 * 7 * 2, 18);
  std::vector<double> tv_t;  // [3,4,7] row-major values of the transposed view
  for (int64_t b = 0; b < 3; ++b) {
    std::vector<double> blk(tv.begin() + b * 28, tv.begin() + (b + 1) * 28);
    auto t = transpose_values(blk, 7, 4);
    tv_t.insert(tv_t.end(), t.begin(), t.end());
  }
  auto ref4 = ref_matmul(
      tv_t, uv, 3, 4, 7, 2, [](int64_t b) { return b; }, [](int64_t b) { return b; });
  for (DType dt : {f32, f64}) {
    Tensor c = matmul(make(tv, Shape{3, 7, 4}, dt).transpose(), make(uv, Shape{3, 7, 2}, dt));
    CHECK(c.shape() == Shape{3, 4, 2});
    check_close(c, ref4, 1e-5, 1e-5);
  }
}

TEST_CASE("matmul: 1-D operands follow NumPy", "[linalg]") {
  for (DType dt : {f32, f64, i32}) {
    Tensor v = make({1, 2, 3}, Shape{3}, dt);
    Tensor m = make({1, 2, 3, 4, 5, 6}, Shape{3, 2}, dt);
    Tensor c = matmul(v, m);
    CHECK(c.shape() == Shape{2});
    check_close(c, {22, 28});
    Tensor mt = make({1, 2, 3, 4, 5, 6}, Shape{2, 3}, dt);
    Tensor d = matmul(mt, v);
    CHECK(d.shape() == Shape{2});
    check_close(d, {14, 32});
    Tensor e = matmul(v, v);
    CHECK(e.shape() == Shape{});
    check_close(e, {14});
    // [3] @ [2,3,2] -> [2,2]
    Tensor bm = make({1, 2, 3, 4, 5, 6, 1, 0, 0, 1, 1, 1}, Shape{2, 3, 2}, dt);
    Tensor f = matmul(v, bm);
    CHECK(f.shape() == Shape{2, 2});
    check_close(f, {22, 28, 4, 5});
  }
}

TEST_CASE("matmul: integer and mixed dtypes", "[linalg]") {
  Tensor a = tensor({{1, -2}, {3, 4}});  // i32
  Tensor b = tensor({{5, 6}, {7, -8}});
  Tensor c = matmul(a, b);
  CHECK(c.dtype() == i32);
  CHECK(c.to_vector<int32_t>() == std::vector<int32_t>{-9, 22, 43, -14});
  Tensor d = matmul(a, b.to(f64));  // promotes to f64
  CHECK(d.dtype() == f64);
  check_close(d, {-9, 22, 43, -14});
}

TEST_CASE("matmul: NaN propagates through zeros", "[linalg]") {
  const double nan = std::nan("");
  for (DType dt : {f32, f64}) {
    Tensor a = make({0, 1}, Shape{1, 2}, dt);
    Tensor b = make({nan, 1}, Shape{2, 1}, dt);
    check_close(matmul(a, b), {nan});
  }
}

TEST_CASE("matmul: errors name the op, shapes and dtypes", "[linalg]") {
  Tensor a = zeros(Shape{2, 3}), b = zeros(Shape{4, 5});
  try {
    matmul(a, b);
    FAIL("expected kiln::Error");
  } catch (const kiln::Error& e) {
    CHECK(std::string(e.what()) == "matmul: inner dimensions differ: a f32[2,3] vs b f32[4,5]");
  }
  check_error([] { matmul(zeros(Shape{}), zeros(Shape{3})); }, {"matmul", "rank", "f32[]"});
  check_error(
      [] {
        matmul(zeros(Shape{2, 2, 3}), zeros(Shape{3, 3, 4}));
      },
      {"matmul", "f32[2,2,3]", "f32[3,3,4]"});
}

TEST_CASE("matmul: oneDNN primitives are cached", "[linalg]") {
  // Batched products with a batch of weights go to a primitive, made once per layout.
  Tensor a = ones(Shape{2, 13, 29}), b = ones(Shape{2, 29, 31});
  matmul(a, b);
  const size_t n = kiln::cpu::onednn_cache_size();
  Tensor c = matmul(ones(Shape{2, 13, 29}), ones(Shape{2, 29, 31}));
  CHECK(kiln::cpu::onednn_cache_size() == n);
  check_close(c, std::vector<double>(2 * 13 * 31, 29.0));
  matmul(ones(Shape{2, 14, 29}), b);
  CHECK(kiln::cpu::onednn_cache_size() == n + 1);
  // Plain 2-D products (transposed or not, batches that fold into rows) call dnnl_sgemm
  // and make no primitive.
  const size_t m = kiln::cpu::onednn_cache_size();
  Tensor x = reshape(arange(0, 35, 1, f32), {5, 7});
  Tensor y = reshape(arange(0, 21, 1, f32), {7, 3});
  const Tensor got[] = {matmul(x, y),
                        matmul(transpose(transpose(x, {1, 0}).contiguous(), {1, 0}), y),
                        matmul(x, transpose(transpose(y, {1, 0}).contiguous(), {1, 0})),
                        reshape(matmul(reshape(x, {1, 5, 7}), y), {5, 3})};
  CHECK(kiln::cpu::onednn_cache_size() == m);
  std::vector<double> want(15, 0.0);  // sum_k (7i + k) (3k + j)
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 7; ++k)
        want[static_cast<size_t>(i * 3 + j)] += (7.0 * i + k) * (3.0 * k + j);
  for (const Tensor& t : got)
    check_close(t, want);
}

TEST_CASE("conv2d: hand-worked 3x3 VALID and SAME", "[linalg]") {
  for (DType dt : {f32, f64, i32}) {
    Tensor x = make({1, 2, 3, 4, 5, 6, 7, 8, 9}, Shape{1, 3, 3, 1}, dt);
    Tensor w = make({1, 0, 0, 1}, Shape{2, 2, 1, 1}, dt);  // x[i,j] + x[i+1,j+1]
    Tensor v = conv2d(x, w);
    CHECK(v.shape() == Shape{1, 2, 2, 1});
    check_close(v, {6, 8, 12, 14});
    Tensor s = conv2d(x, w, {1, 1}, Padding::same);  // pads one row/col after
    CHECK(s.shape() == Shape{1, 3, 3, 1});
    check_close(s, {6, 8, 3, 12, 14, 6, 7, 8, 9});
  }
}

TEST_CASE("conv2d: random against f64 loops (strides, dilations, padding)", "[linalg]") {
  struct Case {
    int64_t N, H, W, C, KH, KW, O;
    std::vector<int64_t> s, d;
  };
  const std::vector<Case> cases = {{2, 7, 6, 3, 3, 2, 4, {1, 1}, {1, 1}},
                                   {1, 9, 8, 5, 3, 3, 6, {2, 1}, {1, 1}},
                                   {2, 10, 11, 4, 3, 3, 3, {1, 2}, {2, 1}},
                                   {1, 8, 8, 16, 5, 5, 8, {3, 3}, {1, 1}},
                                   {3, 6, 7, 2, 1, 1, 5, {2, 2}, {1, 1}}};
  uint32_t seed = 100;
  for (const auto& c : cases)
    for (bool same : {false, true}) {
      auto xv = random_values(c.N * c.H * c.W * c.C, seed++);
      auto wv = random_values(c.KH * c.KW * c.C * c.O, seed++);
      Shape os;
      auto ref = ref_conv(xv, wv, c.N, c.H, c.W, c.C, c.KH, c.KW, c.O, c.s, c.d, same, &os);
      for (DType dt : {f32, f64}) {
        const double tol = dt == f32 ? 1e-4 : 1e-12;
        Tensor y = conv2d(make(xv, Shape{c.N, c.H, c.W, c.C}, dt),
                          make(wv, Shape{c.KH, c.KW, c.C, c.O}, dt), c.s,
                          same ? Padding::same : Padding::valid, c.d);
        INFO("H " << c.H << " W " << c.W << " same " << same << " dtype " << dt);
        CHECK(y.shape() == os);
        check_close(y, ref, tol, tol);
      }
    }
}

TEST_CASE("conv2d: errors", "[linalg]") {
  check_error(
      [] {
        conv2d(zeros(Shape{1, 5, 5, 3}), zeros(Shape{3, 3, 2, 4}));
      },
      {"conv2d", "input channels", "f32[1,5,5,3]", "f32[3,3,2,4]"});
  check_error(
      [] {
        conv2d(zeros(Shape{5, 5, 3}), zeros(Shape{3, 3, 3, 4}));
      },
      {"conv2d", "rank 4", "f32[5,5,3]"});
  check_error(
      [] {
        conv2d(zeros(Shape{1, 2, 2, 1}), zeros(Shape{3, 3, 1, 1}));
      },
      {"conv2d", "VALID", "f32[1,2,2,1]"});
  check_error(
      [] {
        conv2d(zeros(Shape{1, 5, 5, 1}), zeros(Shape{3, 3, 1, 1}), {0, 1});
      },
      {"conv2d", "strides"});
}

TEST_CASE("pooling: hand-worked SAME edge windows and VALID", "[linalg]") {
  for (DType dt : {f32, f64}) {
    Tensor x = make({1, 2, 3, 4, 5, 6, 7, 8, 9}, Shape{1, 3, 3, 1}, dt);
    Tensor m = max_pool2d(x, {2, 2}, {2, 2}, Padding::same);
    CHECK(m.shape() == Shape{1, 2, 2, 1});
    check_close(m, {5, 6, 8, 9});
    Tensor a = avg_pool2d(x, {2, 2}, {2, 2}, Padding::same);  // padding excluded
    check_close(a, {3, 4.5, 7.5, 9});
    check_close(max_pool2d(x, {2, 2}, {2, 2}), {5});
    check_close(avg_pool2d(x, {2, 2}, {2, 2}), {3});
    // 3x3 stride 1 SAME: pads one on each side.
    check_close(avg_pool2d(x, {3, 3}, {1, 1}, Padding::same), {3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7});
    check_close(max_pool2d(x, {3, 3}, {1, 1}, Padding::same), {5, 6, 6, 8, 9, 9, 8, 9, 9});
  }
  Tensor xi = tensor({1, -2, 3, -4}).reshape(Shape{1, 2, 2, 1});
  CHECK(max_pool2d(xi, {2, 2}, {1, 1}).to_vector<int32_t>() == std::vector<int32_t>{3});
}

TEST_CASE("pooling: random against f64 loops", "[linalg]") {
  struct Case {
    int64_t N, H, W, C, KH, KW;
    std::vector<int64_t> s;
  };
  const std::vector<Case> cases = {{2, 7, 6, 3, 3, 2, {1, 1}},
                                   {1, 9, 8, 5, 3, 3, {2, 2}},
                                   {2, 10, 11, 4, 2, 3, {3, 2}},
                                   {1, 5, 5, 16, 5, 5, {2, 2}}};
  uint32_t seed = 300;
  for (const auto& c : cases)
    for (bool same : {false, true})
      for (bool is_max : {false, true}) {
        auto xv = random_values(c.N * c.H * c.W * c.C, seed++);
        Shape os;
        auto ref = ref_pool(xv, c.N, c.H, c.W, c.C, c.KH, c.KW, c.s, same, is_max, &os);
        for (DType dt : {f32, f64}) {
          Tensor x = make(xv, Shape{c.N, c.H, c.W, c.C}, dt);
          const Padding p = same ? Padding::same : Padding::valid;
          Tensor y =
              is_max ? max_pool2d(x, {c.KH, c.KW}, c.s, p) : avg_pool2d(x, {c.KH, c.KW}, c.s, p);
          INFO("H " << c.H << " same " << same << " max " << is_max << " dtype " << dt);
          CHECK(y.shape() == os);
          check_close(y, ref, 1e-5, 1e-6);
        }
      }
}

TEST_CASE("pooling: max_pool2d propagates NaN", "[linalg]") {
  // Once a window holds a NaN its max is NaN, wherever the NaN sits (a NaN followed by larger
  // values used to be replaced in the loop kernel). oneDNN's f32 max pooling drops NaN instead
  // ([1, NaN, 3, 4] gives 4 there), so f32 inputs holding a NaN run the loop kernel too and f32
  // matches f64. Average pooling propagates NaN through the sum.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (DType dt : {f32, f64})
    for (size_t pos = 0; pos < 4; ++pos) {
      INFO("dtype " << dt << " NaN at " << pos);
      std::vector<double> v = {1, 2, 3, 4};
      v[pos] = nan;
      Tensor x = make(v, Shape{1, 2, 2, 1}, dt);
      check_close(max_pool2d(x, {2, 2}, {2, 2}), {nan});
      check_close(avg_pool2d(x, {2, 2}, {2, 2}), {nan});
      // 64 channels (oneDNN's vector path for f32); NaN in even channels only.
      std::vector<double> w(4 * 64);
      std::vector<double> want(64);
      for (size_t i = 0; i < w.size(); ++i)
        w[i] = static_cast<double>(i / 64 + 1);
      for (size_t c = 0; c < 64; ++c) {
        if (c % 2 == 0) w[pos * 64 + c] = nan;
        want[c] = c % 2 == 0 ? nan : 4.0;
      }
      check_close(max_pool2d(make(w, Shape{1, 2, 2, 64}, dt), {2, 2}, {2, 2}), want);
    }
  // Windows without a NaN are untouched by a NaN elsewhere in the input.
  for (DType dt : {f32, f64}) {
    Tensor x = make({nan, 2, 3, 4, 5, 6, 7, 8}, Shape{1, 2, 4, 1}, dt);
    check_close(max_pool2d(x, {2, 2}, {2, 2}), {nan, 8});
  }
}

TEST_CASE("pooling: errors", "[linalg]") {
  check_error(
      [] {
        max_pool2d(zeros(Shape{1, 4, 4}), {2, 2}, {2, 2});
      },
      {"max_pool2d", "rank 4", "f32[1,4,4]"});
  check_error(
      [] {
        avg_pool2d(zeros(Shape{1, 4, 4, 1}), {2}, {2, 2});
      },
      {"avg_pool2d", "window", "f32[1,4,4,1]"});
  check_error(
      [] {
        max_pool2d(zeros(Shape{1, 4, 4, 1}), {2, 2}, {2, -1});
      },
      {"max_pool2d", "strides"});
  check_error(
      [] {
        max_pool2d(zeros(Shape{1, 2, 2, 1}), {3, 3}, {1, 1});
      },
      {"max_pool2d", "VALID", "f32[1,2,2,1]"});
}
