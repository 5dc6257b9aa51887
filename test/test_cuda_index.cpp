// The CUDA kernels of argmax/argmin, concatenate, pad, gather, scatter_add and integer
// div/floor_div (backends/cuda/index_kernels.cpp, index.cu, movement.cu, kernels.cpp), each
// against the CPU's: every dtype, every axis (negative ones too), ties and NaNs, odd sizes,
// views as inputs, the errors the CPU raises from data (an index out of range, an integer
// division by zero), and gradients through them. Without a GPU (or a build without CUDA) every
// test says it skipped. Results that only move or compare values, and integer arithmetic, must
// equal the CPU's bit for bit; see the scatter_add test for the one tolerance.
#include <cstring>
#include <limits>
#include <random>

#include <kiln/kiln.h>

#include "corpus.h"
#include "cuda_testing.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::gpu;
using kiln::testing::have_gpu;
using kiln::testing::rnd;

namespace {

const DType kAll[] = {boolean, u8, i32, i64, f32, f64};

// Bit for bit: the GPU's result has the CPU's type and bytes (NaN payloads and -0 included).
void identical(const Tensor& got_gpu, const Tensor& want_cpu) {
  REQUIRE(got_gpu.device() == gpu);
  const Tensor got = got_gpu.to(Device::cpu()).contiguous(), want = want_cpu.contiguous();
  REQUIRE(got.type() == want.type());
  const size_t es = size_of(got.dtype());
  const auto* g = static_cast<const unsigned char*>(got.raw_data());
  const auto* w = static_cast<const unsigned char*>(want.raw_data());
  for (int64_t i = 0; i < got.numel(); ++i)
    if (std::memcmp(g + i * es, w + i * es, es) != 0) {
      INFO("element " << i << ": got " << got.to_vector<double>()[static_cast<size_t>(i)]
                      << ", expected " << want.to_vector<double>()[static_cast<size_t>(i)]);
      CHECK(false);
      return;
    }
}

// Equal values, NaN matching NaN (payloads may differ: x86 and the GPU make different NaNs)
// and zeros matching in sign.
void same_values(const Tensor& got_gpu, const Tensor& want_cpu) {
  REQUIRE(got_gpu.device() == gpu);
  const Tensor got = got_gpu.to(Device::cpu());
  REQUIRE(got.type() == want_cpu.type());
  const std::vector<double> g = got.to_vector<double>(), w = want_cpu.to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) {
    INFO("element " << i << ": got " << g[i] << ", expected " << w[i]);
    if (std::isnan(w[i]))
      CHECK(std::isnan(g[i]));
    else
      CHECK((g[i] == w[i] && std::signbit(g[i]) == std::signbit(w[i])));
  }
}

// Random values of dtype dt: over the dtype's whole range for integers, in [-2, 2] for floats;
// with `ties`, a handful of values (-3..3; 0..6 for u8), so that many elements are equal.
Tensor values(const Shape& s, DType dt, uint32_t seed, bool ties = false) {
  std::mt19937_64 gen(seed);
  const size_t n = static_cast<size_t>(s.numel());
  auto draw = [&](auto lo, auto hi) {
    using T = decltype(lo);
    std::uniform_int_distribution<T> d(lo, hi);
    std::vector<T> v(n);
    for (auto& e : v)
      e = d(gen);
    return v;
  };
  if (ties) {
    const std::vector<int64_t> v =
        dt == u8 || dt == boolean ? draw(int64_t{0}, int64_t{6}) : draw(int64_t{-3}, int64_t{3});
    if (dt == boolean) return from_vector(v, s) > int64_t{3};
    return cast(from_vector(v, s), dt);
  }
  switch (dt) {
    case DType::boolean:
      return from_vector(draw(0, 1), s) > 0;
    case DType::u8:
      return cast(from_vector(draw(0, 255), s), u8);
    case DType::i32:
      return from_vector(
          draw(std::numeric_limits<int32_t>::min(), std::numeric_limits<int32_t>::max()), s);
    case DType::i64:
      return from_vector(
          draw(std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()), s);
    default:
      return cast(rnd(s, static_cast<uint32_t>(seed), -2, 2), dt);
  }
}

// x with about a tenth of its elements NaN (floats only).
Tensor with_nans(const Tensor& x, uint32_t seed) {
  if (!is_floating(x.dtype())) return x;
  return where(rnd(x.shape(), seed, 0, 1) > 0.9f, Scalar(std::nan("")), x);
}

// The message of the kiln::Error that fn raises ("" when it raises none).
std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

Tensor idx64(std::vector<int64_t> v, Shape s) {
  return from_vector(v, s);
}

}  // namespace

TEST_CASE("cuda index: argmax and argmin, every dtype and axis, ties and NaNs first") {
  if (!have_gpu()) return;
  // {3, 1000}: rows long enough for a block per row; {1, 100003}: one long odd row.
  const Shape shapes[] = {{7}, {5, 9}, {3, 4, 5}, {2, 3, 1, 65}, {3, 1000}, {1, 100003}};
  uint32_t seed = 1;
  for (DType dt : kAll)
    for (const Shape& s : shapes)
      for (bool ties : {false, true}) {
        Tensor x = values(s, dt, ++seed, ties);
        if (ties) x = with_nans(x, ++seed);
        const Tensor xg = x.to(gpu);
        for (int64_t axis = -s.rank(); axis < s.rank(); ++axis) {
          CAPTURE(name(dt), s.str(), ties, axis);
          identical(argmax(xg, axis), argmax(x, axis));
          identical(argmin(xg, axis), argmin(x, axis));
        }
      }
  // Views: a transpose and a strided slice, read on the device.
  const Tensor x = with_nans(values({6, 70}, f32, 50, true), 51);
  const Tensor xg = x.to(gpu);
  for (int64_t axis : {0, 1}) {
    identical(argmax(xg.transpose(), axis), argmax(x.transpose(), axis));
    identical(argmin(xg.slice(1, 1, 70, 3), axis), argmin(x.slice(1, 1, 70, 3), axis));
  }
  // Hand-made rows: equal values and signed zeros take the first index; the first NaN wins;
  // infinities are ordinary extremes.
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  const std::vector<std::vector<double>> rows = {
      {1, 3, 3, 2, 3}, {-0.0, 0.0, -0.0}, {0.0, -0.0}, {2, nan, 5, nan}, {nan, nan},
      {-inf, -inf, 1}, {inf, 1, inf},     {4},         {1, 2, nan},      {-1, -3, -3},
  };
  for (const auto& row : rows)
    for (DType dt : {f32, f64}) {
      CAPTURE(row, name(dt));
      const Tensor r = cast(from_vector(row, Shape{static_cast<int64_t>(row.size())}), dt);
      identical(argmax(r.to(gpu), 0), argmax(r, 0));
      identical(argmin(r.to(gpu), 0), argmin(r, 0));
    }
  // A NaN late in a long row (the block's tree must keep it).
  std::vector<float> longrow(5000, 1.f);
  longrow[4321] = std::nanf("");
  longrow[4999] = std::nanf("");
  const Tensor lr = from_vector(longrow, Shape{1, 5000});
  identical(argmax(lr.to(gpu), 1), argmax(lr, 1));
  identical(argmin(lr.to(gpu), -1), argmin(lr, -1));
}

TEST_CASE("cuda index: concatenate, every dtype and axis, views and empty parts") {
  if (!have_gpu()) return;
  uint32_t seed = 100;
  for (DType dt : kAll) {
    const Shape base{3, 4, 5};
    for (int64_t axis = -3; axis < 3; ++axis) {
      const int64_t ax = axis < 0 ? axis + 3 : axis;
      std::vector<Tensor> parts;
      for (int64_t len : {2, 0, 1, 3}) {
        std::vector<int64_t> dims = base.dims();
        dims[static_cast<size_t>(ax)] = len;
        parts.push_back(with_nans(values(Shape(dims), dt, seed + 1), seed + 2));
        seed += 2;
      }
      std::vector<Tensor> on_gpu;
      for (const Tensor& p : parts)
        on_gpu.push_back(p.to(gpu));
      CAPTURE(name(dt), axis);
      identical(concat(on_gpu, axis), concat(parts, axis));
    }
    // Views as parts: a transpose and a strided slice next to a dense tensor.
    const Tensor a = values({5, 3}, dt, ++seed), b = values({9, 5}, dt, ++seed),
                 c = values({3, 5}, dt, ++seed);
    const Tensor ag = a.to(gpu), bg = b.to(gpu), cg = c.to(gpu);
    identical(concat({ag.transpose(), bg.slice(0, 1, 9, 3), cg}, 0),
              concat({a.transpose(), b.slice(0, 1, 9, 3), c}, 0));
    identical(concat({cg, ag.transpose()}, -1), concat({c, a.transpose()}, -1));
    identical(stack({cg, cg}, 1), stack({c, c}, 1));
  }
  // Mixed dtypes promote (the cast runs on the device), then concatenate.
  const Tensor i = values({2, 3}, i32, 7), f = values({2, 3}, f32, 8);
  identical(concat({i.to(gpu), f.to(gpu)}, 0), concat({i, f}, 0));
  // Odd sizes: many columns, one long axis.
  const Tensor l = values({1, 100003}, f32, 9), r = values({1, 7}, f32, 10);
  identical(concat({l.to(gpu), r.to(gpu)}, 1), concat({l, r}, 1));
}

TEST_CASE("cuda index: pad, every dtype, every dim, values converted as on the CPU, views") {
  if (!have_gpu()) return;
  using Pads = std::vector<std::pair<int64_t, int64_t>>;
  const Pads cases[] = {{{1, 2}, {0, 0}, {3, 1}},
                        {{0, 0}, {2, 0}, {0, 0}},
                        {{0, 0}, {0, 0}, {0, 4}},
                        {{0, 0}, {0, 0}, {0, 0}},
                        {{5, 5}, {1, 1}, {1, 1}}};
  const double pad_values[] = {0.0, 2.5, -1.0, 1e3, -0.0};
  uint32_t seed = 200;
  for (DType dt : kAll)
    for (const Pads& p : cases)
      for (double v : pad_values) {
        if (dt == u8 && (v < 0 || v > 255)) continue;  // out of u8's range: undefined
        const Tensor x = with_nans(values({3, 4, 5}, dt, seed + 1), seed + 2);
        seed += 2;
        CAPTURE(name(dt), v);
        identical(pad(x.to(gpu), p, Scalar(v)), pad(x, p, Scalar(v)));
      }
  // NaN and infinite padding for floats, a fractional value for bool (true), for ints (2).
  for (DType dt : {f32, f64}) {
    const Tensor x = values({2, 3}, dt, 300);
    identical(pad(x.to(gpu), {{1, 1}, {2, 0}}, Scalar(std::nan(""))),
              pad(x, {{1, 1}, {2, 0}}, Scalar(std::nan(""))));
    identical(pad(x.to(gpu), {{0, 1}, {0, 1}}, Scalar(-std::numeric_limits<double>::infinity())),
              pad(x, {{0, 1}, {0, 1}}, Scalar(-std::numeric_limits<double>::infinity())));
  }
  for (DType dt : {boolean, u8, i32, i64}) {
    const Tensor x = values({4, 3}, dt, 301);
    identical(pad(x.to(gpu), {{1, 0}, {0, 2}}, Scalar(0.5)), pad(x, {{1, 0}, {0, 2}}, Scalar(0.5)));
    identical(pad(x.to(gpu), {{1, 0}, {0, 2}}, Scalar(2.7)), pad(x, {{1, 0}, {0, 2}}, Scalar(2.7)));
  }
  // Views read through their strides: transpose, strided slice, broadcast, offset slice.
  const Tensor x = values({6, 8}, f32, 302);
  const Tensor xg = x.to(gpu);
  const Pads p2 = {{2, 1}, {1, 3}};
  identical(pad(xg.transpose(), p2, Scalar(7)), pad(x.transpose(), p2, Scalar(7)));
  identical(pad(xg.slice(1, 1, 8, 3), p2), pad(x.slice(1, 1, 8, 3), p2));
  identical(pad(broadcast_to(xg.slice(0, 2, 3), {4, 8}), p2),
            pad(broadcast_to(x.slice(0, 2, 3), {4, 8}), p2));
  identical(pad(xg.slice(0, 3, 6), p2, Scalar(-1)), pad(x.slice(0, 3, 6), p2, Scalar(-1)));
  // A rank-0 tensor (nothing to pad), an empty input padded, an odd long dim, rank 8.
  const Tensor s = full({}, 3.5f);
  identical(pad(s.to(gpu), {}), pad(s, {}));
  const Tensor e = Tensor::empty({0, 3}, f32);
  identical(pad(e.to(gpu), {{1, 1}, {0, 1}}, Scalar(4)), pad(e, {{1, 1}, {0, 1}}, Scalar(4)));
  const Tensor l = values({1, 100003}, i64, 303);
  identical(pad(l.to(gpu), {{0, 1}, {3, 5}}, Scalar(-9)), pad(l, {{0, 1}, {3, 5}}, Scalar(-9)));
  const Tensor r8 = values({2, 1, 2, 1, 3, 1, 2, 2}, f64, 304);
  const Pads p8 = {{0, 1}, {1, 0}, {0, 0}, {1, 1}, {0, 0}, {2, 0}, {0, 1}, {1, 0}};
  identical(pad(r8.to(gpu), p8, Scalar(0.25)), pad(r8, p8, Scalar(0.25)));
}

TEST_CASE("cuda index: gather, every dtype, axis and index dtype, views, duplicates") {
  if (!have_gpu()) return;
  uint32_t seed = 400;
  const Shape xs{4, 5, 6};
  for (DType dt : kAll)
    for (DType it : {i32, i64})
      for (int64_t axis = -3; axis < 3; ++axis) {
        const int64_t n = xs[static_cast<size_t>(axis < 0 ? axis + 3 : axis)];
        const Tensor x = with_nans(values(xs, dt, seed + 1), seed + 2);
        seed += 2;
        // Duplicates, the first and last index, 1-D and 2-D indices, a scalar index.
        const Tensor flat = cast(idx64({n - 1, 0, 2, 2, n - 1, 1, 0}, Shape{7}), it);
        const Tensor grid = cast(idx64({1, 0, n - 1, 3, 3, 2}, Shape{2, 3}), it);
        const Tensor one = cast(full({}, n - 2, i64), it);
        CAPTURE(name(dt), name(it), axis);
        const Tensor xg = x.to(gpu);
        for (const Tensor& idx : {flat, grid, one})
          identical(gather(xg, idx.to(gpu), axis), gather(x, idx, axis));
        identical(gather(xg, one, axis), gather(x, one, axis));  // a CPU scalar goes along
      }
  // Views as x and as indices; empty indices; odd long rows.
  const Tensor x = values({7, 9}, f64, 500);
  const Tensor xg = x.to(gpu);
  const Tensor idx = idx64({0, 8, 3, 3, 1, 6, 2, 5}, Shape{8});
  identical(gather(xg.transpose(), idx.to(gpu), 0), gather(x.transpose(), idx, 0));
  identical(gather(xg.slice(1, 0, 9, 2), idx.slice(0, 0, 8, 2).to(gpu), 0),
            gather(x.slice(1, 0, 9, 2), idx.slice(0, 0, 8, 2), 0));
  identical(gather(xg, idx.to(gpu).slice(0, 1, 8, 3), 1), gather(x, idx.slice(0, 1, 8, 3), 1));
  const Tensor none = Tensor::empty({0}, i64);
  identical(gather(xg, none.to(gpu), 1), gather(x, none, 1));
  const Tensor big = values({3, 100003}, f32, 501);
  const Tensor bi = cast(rnd({1001}, 502, 0, 100002.5), i64);  // f32 values <= 100002.5
  identical(gather(big.to(gpu), bi.to(gpu), 1), gather(big, bi, 1));
}

TEST_CASE("cuda index: scatter_add, integers exact (wrapping), floats within a tolerance") {
  if (!have_gpu()) return;
  uint32_t seed = 600;
  const Shape xs{4, 5, 6};
  for (DType dt : kAll)
    for (DType it : {i32, i64})
      for (int64_t axis = -3; axis < 3; ++axis) {
        const int64_t ax = axis < 0 ? axis + 3 : axis;
        const int64_t n = xs[static_cast<size_t>(ax)];
        const Tensor x = values(xs, dt, ++seed);
        // Unique indices: every destination gets at most one update, so floats are exact too.
        const Tensor unique = cast(idx64({n - 1, 0, 2}, Shape{3}), it);
        // Duplicates: up to four updates per destination, in an unspecified order on the GPU.
        const Tensor dups = cast(idx64({1, n - 1, 1, 0, 1, n - 1, 1}, Shape{7}), it);
        for (const Tensor& idx : {unique, dups}) {
          std::vector<int64_t> ud = xs.dims();
          ud[static_cast<size_t>(ax)] = idx.numel();
          const Tensor upd = values(Shape(ud), dt, ++seed);
          CAPTURE(name(dt), name(it), axis, idx.numel());
          const Tensor got = scatter_add(x.to(gpu), idx.to(gpu), upd.to(gpu), axis);
          const Tensor want = scatter_add(x, idx, upd, axis);
          if (!is_floating(dt) || idx.numel() == 3) {
            identical(got, want);
          } else {
            // Sums of at most 5 terms in [-2, 2] (x and four updates), each order's rounding
            // error at most 4 * eps * 10 (recursive summation bound): two orders differ by
            // at most 8 * eps * 10, 1e-5 for f32 (eps 1.2e-7) and 2e-14 for f64.
            const double tol = dt == f32 ? 1e-5 : 2e-14;
            REQUIRE(got.type() == want.type());
            check_close(got.to(Device::cpu()), want, 0, tol);
          }
        }
      }
  // Integer sums that overflow wrap as on the CPU: many large updates to one place.
  const Tensor big32 = full({1, 3}, std::numeric_limits<int32_t>::max() - 5, i32);
  const Tensor many = idx64(std::vector<int64_t>(50, 0), Shape{50});
  const Tensor u32 = full({50, 3}, 1 << 30, i32);
  identical(scatter_add(big32.to(gpu), many.to(gpu), u32.to(gpu), 0),
            scatter_add(big32, many, u32, 0));
  const Tensor u8s = full({50, 3}, 200, u8), x8 = full({1, 3}, 77, u8);
  identical(scatter_add(x8.to(gpu), many.to(gpu), u8s.to(gpu), 0), scatter_add(x8, many, u8s, 0));
  // u8 and bool next to each other in one 32-bit word, updated by different threads at once.
  const Tensor xb = values({1, 13}, boolean, 700), ub = values({40, 13}, boolean, 701);
  const Tensor i40 = cast(rnd({40}, 702, 0, 0.99), i64);
  identical(scatter_add(xb.to(gpu), i40.to(gpu), ub.to(gpu), 0), scatter_add(xb, i40, ub, 0));
  const Tensor xu = values({2, 13}, u8, 703), uu = values({40, 13}, u8, 704);
  const Tensor i2 = cast(rnd({40}, 705, 0, 1.99), i64);
  identical(scatter_add(xu.to(gpu), i2.to(gpu), uu.to(gpu), 0), scatter_add(xu, i2, uu, 0));
  // Views as x, indices and updates; empty indices.
  const Tensor x = values({6, 8}, i64, 706), u = values({5, 8}, i64, 707);
  const Tensor idx = idx64({4, 0, 4, 5, 1}, Shape{5});
  identical(scatter_add(x.to(gpu).transpose(), idx.to(gpu), u.to(gpu).transpose(), 1),
            scatter_add(x.transpose(), idx, u.transpose(), 1));
  const Tensor none = Tensor::empty({0}, i32);
  identical(scatter_add(x.to(gpu), none.to(gpu), Tensor::empty({6, 0}, i64).to(gpu), 1),
            scatter_add(x, none, Tensor::empty({6, 0}, i64), 1));
}

TEST_CASE("cuda index: integer div and floor_div match the CPU; float floor_div too") {
  if (!have_gpu()) return;
  const OpDef& div_op = registry().op("div");
  const OpDef& floor_op = registry().op("floor_div");
  auto div_prim = [&](const Tensor& a, const Tensor& b) { return dispatch1(div_op, {a, b}); };
  const int64_t lo32 = std::numeric_limits<int32_t>::min(),
                hi32 = std::numeric_limits<int32_t>::max();
  // Every sign combination, exact and inexact quotients, the extremes; the minimum over -1
  // wraps to itself in both divisions (-min is min).
  const std::vector<int64_t> a = {7,    -7,       7, -7, 0, 13, -13, hi32,
                                  lo32, lo32 + 1, 5, -5, 6, -6, lo32};
  const std::vector<int64_t> b = {2, 2, -2, -2, 3, 1, -1, -1, 3, -1, 7, 7, 3, -3, -1};
  const Shape s{static_cast<int64_t>(a.size())};
  for (DType dt : {i32, i64}) {
    const Tensor at = cast(idx64(a, s), dt), bt = cast(idx64(b, s), dt);
    CAPTURE(name(dt));
    identical(div_prim(at.to(gpu), bt.to(gpu)), div_prim(at, bt));
    identical(floor_div(at.to(gpu), bt.to(gpu)), floor_div(at, bt));
    const Tensor mn = full({1}, dt == i32 ? lo32 : std::numeric_limits<int64_t>::min(), dt);
    const Tensor m1 = full({1}, -1, dt);
    identical(floor_div(mn.to(gpu), m1.to(gpu)), floor_div(mn, m1));
    // Random operands, broadcast, a strided divisor, a CPU scalar divisor.
    const Tensor x = maximum(values({5, 12}, dt, 800 + static_cast<uint32_t>(dt)),
                             cast(full({}, lo32 + 1, i64), dt));
    Tensor y = values({12}, dt, 900 + static_cast<uint32_t>(dt), true);
    y = where(equal(y, cast(full({}, 0), dt)), cast(full({}, 3), dt), y);  // no zeros
    identical(div_prim(x.to(gpu), y.to(gpu)), div_prim(x, y));
    identical(floor_div(x.to(gpu), y.to(gpu)), floor_div(x, y));
    const Tensor yy = concat({y, y}, 0);
    identical(floor_div(x.to(gpu), yy.to(gpu).slice(0, 0, 24, 2)),
              floor_div(x, yy.slice(0, 0, 24, 2)));
    identical(floor_div(x.to(gpu), Scalar(-4)), floor_div(x, Scalar(-4)));
  }
  // u8 and bool through the primitives (the public functions promote them).
  const Tensor x8 = values({40}, u8, 950);
  Tensor y8 = values({40}, u8, 951);
  y8 = where(equal(y8, cast(full({}, 0), u8)), cast(full({}, 7), u8), y8);
  identical(div_prim(x8.to(gpu), y8.to(gpu)), div_prim(x8, y8));
  identical(dispatch1(floor_op, {x8.to(gpu), y8.to(gpu)}), dispatch1(floor_op, {x8, y8}));
  const Tensor xb = values({9}, boolean, 952), tb = full({9}, true, boolean);
  identical(div_prim(xb.to(gpu), tb.to(gpu)), div_prim(xb, tb));
  identical(dispatch1(floor_op, {xb.to(gpu), tb.to(gpu)}), dispatch1(floor_op, {xb, tb}));
  // Floats: floor(a / b) with IEEE division on both, so the same values (NaNs from 0/0 and
  // inf/inf may carry other payloads), signed zeros and infinities included.
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> fa = {7.5, -7.5, 1, -1, 0, -0.0, 1, inf, 0, 5, -5, 1e30, 3};
  const std::vector<double> fb = {2, 2, 0, 0, 0, 3, -inf, inf, -2, 0.1, 0.1, 1e-30, -0.0};
  for (DType dt : {f32, f64}) {
    const Tensor at = cast(from_vector(fa, Shape{13}), dt),
                 bt = cast(from_vector(fb, Shape{13}), dt);
    same_values(floor_div(at.to(gpu), bt.to(gpu)), floor_div(at, bt));
    const Tensor x = values({6, 7}, dt, 960), y = values({7}, dt, 961);
    same_values(floor_div(x.to(gpu), y.to(gpu)), floor_div(x, y));
    same_values(div_prim(x.to(gpu), y.to(gpu)), div_prim(x, y));
  }
}

TEST_CASE("cuda index: bad indices and integer division by zero raise the CPU's error") {
  if (!have_gpu()) return;
  const Tensor x = values({5, 3}, f32, 1000);
  const Tensor xg = x.to(gpu);
  // The first bad index in order is the one named (7 here, not -1 or 9).
  for (const auto& bad : {std::vector<int64_t>{0, 7, -1, 9}, std::vector<int64_t>{-1},
                          std::vector<int64_t>{4, 4, 5}}) {
    for (DType it : {i32, i64}) {
      const Tensor idx = cast(idx64(bad, Shape{static_cast<int64_t>(bad.size())}), it);
      CAPTURE(bad, name(it));
      const std::string cpu = error_of([&] { gather(x, idx, 0); });
      const std::string cuda = error_of([&] { gather(xg, idx.to(gpu), 0); });
      REQUIRE(!cpu.empty());
      CHECK(cuda.find(cpu) != std::string::npos);  // the CPU's message, then where
      CHECK(cuda.find("cuda:0") != std::string::npos);
      const Tensor upd = values({static_cast<int64_t>(bad.size()), 3}, f32, 1001);
      const std::string cpu_s = error_of([&] { scatter_add(x, idx, upd, 0); });
      const std::string cuda_s = error_of([&] { scatter_add(xg, idx.to(gpu), upd.to(gpu), 0); });
      REQUIRE(!cpu_s.empty());
      CHECK(cuda_s.find(cpu_s) != std::string::npos);
      CHECK(cuda_s.find("cuda:0") != std::string::npos);
    }
  }
  kiln::testing::check_error(
      [&] {
        gather(xg, idx64({1, 3}, Shape{2}).to(gpu), -1);
      },
      {"gather", "index 3 is out of range [0, 3)", "f32[5,3]", "i64[2]", "cuda:0", "position 1"});
  // Checked even when nothing would be copied: an empty axis, an empty outer dim.
  const Tensor empty_axis = Tensor::empty({2, 0}, f32);
  CHECK(!error_of([&] { gather(empty_axis.to(gpu), idx64({0}, Shape{1}).to(gpu), 1); }).empty());
  const Tensor empty_outer = Tensor::empty({0, 4}, f32);
  CHECK(!error_of([&] { gather(empty_outer.to(gpu), idx64({4}, Shape{1}).to(gpu), 1); }).empty());
  // Integer division by zero, div and floor_div, every integer dtype; the device goes on.
  const OpDef& div_op = registry().op("div");
  for (DType dt : {u8, i32, i64, boolean}) {
    const Tensor a = cast(idx64({4, 5, 6, 7}, Shape{4}), dt);
    const Tensor b = cast(idx64({1, 2, 0, 0}, Shape{4}), dt);
    CAPTURE(name(dt));
    const std::string cpu = error_of([&] { dispatch1(div_op, {a, b}); });
    const std::string cuda = error_of([&] { dispatch1(div_op, {a.to(gpu), b.to(gpu)}); });
    REQUIRE(!cpu.empty());
    CHECK(cuda.find(cpu) != std::string::npos);
    CHECK(cuda.find("cuda:0") != std::string::npos);
    if (dt != boolean) {
      const std::string cpu_f = error_of([&] { floor_div(a, b); });
      const std::string cuda_f = error_of([&] { floor_div(a.to(gpu), b.to(gpu)); });
      REQUIRE(!cpu_f.empty());
      CHECK(cuda_f.find(cpu_f) != std::string::npos);
      CHECK(cuda_f.find("position 2") != std::string::npos);  // the first zero
    }
  }
  kiln::testing::check_error([&] { floor_div(full({3}, 1, i32).to(gpu), Scalar(0)); },
                             {"floor_div", "integer division by zero", "divisor i32[]", "cuda:0"});
  // After the errors the device still works, and a good call gives the CPU's answer.
  const Tensor good = idx64({4, 0, 2}, Shape{3});
  identical(gather(xg, good.to(gpu), 0), gather(x, good, 0));
  const Tensor ia = cast(idx64({9, -9}, Shape{2}), i32), ib = cast(idx64({4, 4}, Shape{2}), i32);
  identical(floor_div(ia.to(gpu), ib.to(gpu)), floor_div(ia, ib));
}

TEST_CASE("cuda index: gradients through gather, concatenate and pad on CUDA tensors") {
  if (!have_gpu()) return;
  const Tensor x = rnd({6, 4}, 1100), w = rnd({9, 4}, 1101);
  const Tensor idx = idx64({5, 0, 2, 2, 5, 1, 0, 2, 3}, Shape{9});
  auto gather_grad = [&](Device d) {
    Variable v(x.to(d), "x");
    GradientTape tape;
    Tensor loss = sum(gather(v.value(), idx.to(d), 0) * w.to(d));
    return tape.gradient(loss, {v})[0];
  };
  // Duplicate indices sum their gradients with float atomics: at most 3 terms in [-2, 2].
  const Tensor gg = gather_grad(gpu);
  REQUIRE(gg.device() == gpu);
  check_close(gg.to(Device::cpu()), gather_grad(Device::cpu()), 0, 1e-5);
  const Tensor a = rnd({3, 4}, 1102), b = rnd({2, 4}, 1103), wc = rnd({5, 4}, 1104);
  auto concat_grads = [&](Device d) {
    Variable va(a.to(d), "a"), vb(b.to(d), "b");
    GradientTape tape;
    Tensor loss = sum(square(concat({va.value(), vb.value() * 2.f}, 0)) * wc.to(d));
    return tape.gradient(loss, {va, vb});
  };
  const auto cg = concat_grads(gpu), cc = concat_grads(Device::cpu());
  for (size_t i = 0; i < 2; ++i) {
    REQUIRE(cg[i].device() == gpu);
    check_close(cg[i].to(Device::cpu()), cc[i], 1e-6, 1e-6);
  }
  const Tensor p = rnd({3, 5}, 1105), wp = rnd({6, 6}, 1106);
  auto pad_grad = [&](Device d) {
    Variable v(p.to(d), "p");
    GradientTape tape;
    Tensor loss = sum(tanh(pad(v.value(), {{1, 2}, {0, 1}}, Scalar(0.5))) * wp.to(d));
    return tape.gradient(loss, {v})[0];
  };
  const Tensor pg = pad_grad(gpu);
  REQUIRE(pg.device() == gpu);
  check_close(pg.to(Device::cpu()), pad_grad(Device::cpu()), 1e-5, 1e-6);
  // A strided slice's gradient pads on the device too (slice_vjp: expand_dims, pad, reshape).
  auto slice_grad = [&](Device d) {
    Variable v(p.to(d), "p");
    GradientTape tape;
    Tensor loss = sum(square(v.value().slice(1, 0, 5, 2)));
    return tape.gradient(loss, {v})[0];
  };
  check_close(slice_grad(gpu).to(Device::cpu()), slice_grad(Device::cpu()), 1e-6, 1e-6);
}
