#pragma once

// The JIT's differential fuzzer, part 2: the generator of random, well-typed programs (see
// jit_fuzz.h). Every choice is a draw of one std::mt19937_64, so a seed names the same program
// on every platform. Shapes come from one "full shape" per program whose suffixes (some dims
// set to 1) the inputs take, so values broadcast against each other; second operands are a
// pool value that broadcasts or a captured constant of a broadcasting variant shape ([a,b]
// against [b], [a,1], [1,b], [], or one more leading dim). Sizes are 1..17 with 1 and odd
// sizes favoured; results stay under 2048 elements so the fuzzer also runs under ASan. One seed
// in 16 is big (dims up to 1000, results up to 2^18 elements): kernels then split across
// threads, and the program ends in a dense layer whose product is often large enough for the
// JIT to compute it in row blocks (matmul_bias_act, product epilogues). Modes by seed: special
// (NaN, inf, -0.0 inputs) when seed % 8 == 7, dynamic (a -1 batch in the input_signature, called
// with two batch sizes) when seed % 3 == 1.

#include <array>

#include "jit_fuzz.h"

namespace kiln::fuzz {

// ---- the generator -------------------------------------------------------------------------

namespace detail {

class Generator {
 public:
  explicit Generator(uint64_t seed) : rng_(seed) { p_.seed = seed; }

  Program run() {
    p_.special = p_.seed % 8 == 7;
    big_ = p_.seed % 16 == 5;
    max_numel_ = big_ ? int64_t{1} << 18 : 2048;
    const bool dynamic = p_.seed % 3 == 1;
    if (dynamic) {
      static const int64_t sizes[] = {1, 2, 3, 5, 7, 9};
      const int64_t b0 = sizes[next(6)];
      int64_t b1 = sizes[next(6)];
      if (b1 == b0) b1 = b0 == 1 ? 5 : 1;
      p_.batches = {b0, b1};
      max_batch_ = std::max(b0, b1);
    }
    // A full shape the inputs take suffixes of (dims sometimes 1), so they broadcast.
    static const int rank_weights[] = {0, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4};
    int64_t rank = rank_weights[next(std::size(rank_weights))];
    if (dynamic && rank == 0) rank = 2;
    Shape full;
    do {
      full = Shape(std::vector<int64_t>(static_cast<size_t>(rank)));
      // Equal neighbours half the time: square shapes catch code that tells a row vector
      // from a column by its size.
      for (size_t i = 0; i < full.size(); ++i)
        full[i] = i > 0 && coin(0.5) ? full[i - 1] : dim();
      if (dynamic) full[0] = -1;
    } while (numel(full) > (big_ ? 200000 : 600));
    for (int i = 0; i < 3; ++i) {
      static const DType dtypes[] = {f32, f32, f32,        f32,        f32,           f32,
                                     f64, f64, DType::i32, DType::i32, DType::boolean};
      const DType d = i == 0 ? f32 : dtypes[next(std::size(dtypes))];
      const int64_t r = i == 0 ? rank : static_cast<int64_t>(next(static_cast<uint64_t>(rank + 1)));
      Shape s(std::vector<int64_t>(full.dims().end() - r, full.dims().end()));
      for (auto& e : s.dims())
        if (i > 0 && coin(0.25)) e = 1;
      p_.inputs.push_back({d, s});
      bound_.push_back(d == DType::boolean ? 1 : is_integral(d) ? 4 : 2);
    }
    const int steps = 4 + static_cast<int>(next(14));
    for (int tries = 0; tries < 400 && static_cast<int>(p_.steps.size()) < steps; ++tries)
      step();
    // Big programs end in a layer, so that its product is live and often large.
    if (big_) layer();
    const int n = static_cast<int>(values());
    const int first = static_cast<int>(p_.inputs.size());
    const int outs = std::min(n - first, 1 + static_cast<int>(next(3)));
    for (int k = 0; k < outs; ++k)
      p_.outputs.push_back(n - 1 - k);
    // Sometimes an input, or one value twice, is a result too.
    if (p_.outputs.empty() || coin(0.1)) p_.outputs.push_back(static_cast<int>(next(3)));
    if (coin(0.1)) p_.outputs.push_back(p_.outputs[0]);
    return p_;
  }

 private:
  static constexpr double kMaxBound = 1e4;

  uint64_t next(uint64_t n) { return rng_() % n; }
  bool coin(double prob) { return static_cast<double>(rng_() >> 11) * 0x1.0p-53 < prob; }
  int64_t dim() {
    static const int64_t dims[] = {1, 1, 2, 3, 3, 4, 5, 5, 6, 7, 8, 9, 11, 13, 16, 17};
    // Big programs: kernels split across threads (32K elements each) and long rows.
    static const int64_t big[] = {1, 3, 31, 64, 127, 257, 1000};
    return big_ ? big[next(std::size(big))] : dims[next(std::size(dims))];
  }
  size_t values() const { return p_.inputs.size() + p_.steps.size(); }
  DType dtype(int v) const {
    const size_t i = static_cast<size_t>(v);
    return i < p_.inputs.size() ? p_.inputs[i].dtype : p_.steps[i - p_.inputs.size()].dtype;
  }
  Shape shape(int v) const {
    const size_t i = static_cast<size_t>(v);
    return i < p_.inputs.size() ? p_.inputs[i].shape : p_.steps[i - p_.inputs.size()].shape;
  }
  double bound(int v) const { return bound_[static_cast<size_t>(v)]; }
  int64_t numel(const Shape& s) const {
    int64_t n = 1;
    for (int64_t d : s)
      n *= d < 0 ? max_batch_ : d;
    return n;
  }
  static bool known(const Shape& s) {
    return std::all_of(s.begin(), s.end(), [](int64_t d) { return d >= 0; });
  }
  static bool is_float_type(DType d) { return d == f32 || d == f64; }

  // A value satisfying `ok`, most often one of the latest (deep chains), or -1.
  template <class Pred>
  int pick(Pred ok) {
    std::vector<int> c;
    for (int v = 0; v < static_cast<int>(values()); ++v)
      if (ok(v)) c.push_back(v);
    if (c.empty()) return -1;
    if (coin(0.5)) return c[c.size() - 1 - next(std::min<uint64_t>(c.size(), 3))];
    return c[next(c.size())];
  }

  // NumPy broadcasting where -1 (the batch) matches itself and 1 only.
  static bool broadcast(const Shape& a, const Shape& b, Shape* out) {
    const size_t r = std::max(a.size(), b.size());
    std::vector<int64_t> o(r);
    for (size_t i = 0; i < r; ++i) {
      const int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
      const int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
      if (da != db && da != 1 && db != 1) return false;
      o[i] = da == 1 ? db : da;
    }
    *out = Shape(std::move(o));
    return true;
  }

  int add(Step s, double b) {
    if (!p_.special && !(b <= kMaxBound)) return -1;
    if (numel(s.shape) > max_numel_ || s.shape.rank() > 5) return -1;
    p_.steps.push_back(std::move(s));
    bound_.push_back(p_.special ? INFINITY : b);
    return static_cast<int>(values()) - 1;
  }

  // A captured tensor; its batch dims become 1 (it broadcasts against the batch).
  int constant(DType d, Shape s) {
    for (auto& e : s.dims())
      if (e < 0) e = 1;
    return add({Op::constant, {}, {static_cast<int64_t>(rng_() >> 1)}, false, 0, d, s},
               is_integral(d) ? 4 : 2);
  }

  // A shape that broadcasts against s: a suffix of it, some dims 1, sometimes a new lead dim.
  Shape variant(const Shape& s) {
    const int64_t keep = static_cast<int64_t>(next(static_cast<uint64_t>(s.rank() + 1)));
    std::vector<int64_t> d(s.dims().end() - keep, s.dims().end());
    for (auto& e : d)
      if (coin(0.35)) e = 1;
    if (keep == s.rank() && s.rank() < 4 && coin(0.15)) d.insert(d.begin(), dim());
    return Shape(std::move(d));
  }

  // A second operand for `a`: a pool value of the same dtype that broadcasts, or a constant.
  int partner(int a) {
    Shape o;
    int b = coin(0.6) ? pick([&](int v) {
      return dtype(v) == dtype(a) && broadcast(shape(a), shape(v), &o) && numel(o) <= max_numel_;
    })
                      : -1;
    return b >= 0 ? b : constant(dtype(a), variant(shape(a)));
  }

  void step() {
    switch (next(21)) {
      case 0:
      case 1:
      case 2:
      case 3:
        unary();
        break;
      case 4:
      case 5:
      case 6:
      case 7:
        binary();
        break;
      case 8:
        scalar();
        break;
      case 9:
        compare();
        break;
      case 10:
        logical_or_select();
        break;
      case 11:
        cast();
        break;
      case 12:
      case 13:
        reduce();
        break;
      case 14:
        softmax();
        break;
      case 15:
        matmul();
        break;
      case 16:
        reshape();
        break;
      case 17:
        transpose_or_slice();
        break;
      case 18:
        expand_squeeze_or_broadcast();
        break;
      case 19:
        layer();
        break;
      default:
        concat();
        break;
    }
  }

  void unary() {
    const int a = pick([&](int v) { return is_float_type(dtype(v)); });
    if (a < 0) return;
    static const Op ops[] = {Op::neg,      Op::abs,      Op::exp,    Op::tanh, Op::sigmoid,
                             Op::log_abs1, Op::sqrt_abs, Op::square, Op::relu, Op::sin,
                             Op::erf,      Op::floor,    Op::round,  Op::exp,  Op::tanh};
    const Op op = ops[next(std::size(ops))];
    const double ba = bound(a);
    double b = ba;
    switch (op) {
      case Op::exp:
        b = ba > 20 ? INFINITY : std::exp(ba);
        break;
      case Op::tanh:
      case Op::sigmoid:
      case Op::sin:
      case Op::erf:
        b = 1;
        break;
      case Op::log_abs1:
        b = std::log1p(ba);
        break;
      case Op::sqrt_abs:
        b = std::sqrt(ba);
        break;
      case Op::square:
        b = ba * ba;
        break;
      case Op::floor:
      case Op::round:
        b = ba + 1;
        break;
      default:
        break;
    }
    add({op, {a}, {}, false, 0, dtype(a), shape(a)}, b);
  }

  void binary() {
    const bool ints = coin(0.2);
    int a = pick([&](int v) { return ints ? is_integral(dtype(v)) : is_float_type(dtype(v)); });
    if (a < 0) return;
    int b = partner(a);
    if (b < 0) return;
    if (coin(0.5)) std::swap(a, b);
    Shape o;
    broadcast(shape(a), shape(b), &o);
    static const Op ops[] = {Op::add, Op::sub, Op::mul, Op::safe_div, Op::maximum, Op::minimum};
    const Op op = ops[next(ints ? 3 : 6)];
    const double ba = bound(a), bb = bound(b);
    const double bo = op == Op::add || op == Op::sub ? ba + bb
                      : op == Op::mul                ? ba * bb
                      : op == Op::safe_div           ? ba
                                                     : std::max(ba, bb);
    add({op, {a, b}, {}, false, 0, dtype(a), o}, ints ? std::min(bo, 2e9) : bo);
  }

  void scalar() {
    const int a = pick([&](int v) { return dtype(v) != DType::boolean; });
    if (a < 0) return;
    static const double fs[] = {0.5, -1.5, 2.0, 3.25, 0.0, -0.0, 1.0, -1.0, 1e-3};
    const bool ints = is_integral(dtype(a));
    const double c = ints ? static_cast<double>(next(7)) - 3 : fs[next(std::size(fs))];
    const Op op = std::array{Op::add_scalar, Op::mul_scalar, Op::rsub_scalar}[next(3)];
    const double b = op == Op::mul_scalar ? bound(a) * std::abs(c) : bound(a) + std::abs(c);
    add({op, {a}, {}, false, c, dtype(a), shape(a)}, ints ? std::min(b, 2e9) : b);
  }

  void compare() {
    const int a = pick([&](int v) { return dtype(v) != DType::boolean; });
    if (a < 0) return;
    int b = partner(a);
    if (b < 0) return;
    Shape o;
    broadcast(shape(a), shape(b), &o);
    const Op op =
        std::array{Op::less, Op::greater, Op::equal, Op::not_equal, Op::less_equal}[next(5)];
    add({op, {a, b}, {}, false, 0, DType::boolean, o}, 1);
  }

  void logical_or_select() {
    const int c = pick([&](int v) { return dtype(v) == DType::boolean; });
    if (c < 0) return;
    if (coin(0.3)) {
      if (coin(0.3)) {
        add({Op::logical_not, {c}, {}, false, 0, DType::boolean, shape(c)}, 1);
        return;
      }
      const int d = partner(c);
      if (d < 0) return;
      Shape o;
      broadcast(shape(c), shape(d), &o);
      add({coin(0.5) ? Op::logical_and : Op::logical_or, {c, d}, {}, false, 0, DType::boolean, o},
          1);
      return;
    }
    Shape ca, o;
    const int a = pick([&](int v) {
      return dtype(v) != DType::boolean && broadcast(shape(c), shape(v), &ca) &&
             numel(ca) <= max_numel_;
    });
    if (a < 0) return;
    broadcast(shape(c), shape(a), &ca);
    const int b = partner(a);
    if (b < 0 || !broadcast(ca, shape(b), &o)) return;
    add({Op::select, {c, a, b}, {}, false, 0, dtype(a), o}, std::max(bound(a), bound(b)));
  }

  void cast() {
    const int a = pick([](int) { return true; });
    const DType from = dtype(a);
    std::vector<DType> to;
    if (from == f32) to = {f64, DType::boolean, DType::i32};
    if (from == f64) to = {f32, DType::boolean};
    if (from == DType::boolean) to = {f32, f64, DType::i32};
    if (is_integral(from)) to = {f32, f64, from == DType::i32 ? DType::i64 : DType::i32};
    const DType d = to[next(to.size())];
    add({Op::cast, {a}, {}, false, 0, d, shape(a)}, d == DType::boolean ? 1 : bound(a));
  }

  void reduce() {
    const int a = pick([](int) { return true; });
    const DType d = dtype(a);
    if (d == DType::boolean) return;
    const Op op = is_float_type(d) ? std::array{Op::sum, Op::max, Op::min, Op::mean}[next(4)]
                                   : std::array{Op::sum, Op::max, Op::min}[next(3)];
    const Shape& s = shape(a);
    std::vector<int64_t> axes;
    for (int64_t i = 0; i < s.rank(); ++i)
      if (coin(0.5)) axes.push_back(coin(0.2) ? i - s.rank() : i);
    const bool keep = coin(0.5);
    std::vector<int64_t> out;
    double count = 1;
    for (int64_t i = 0; i < s.rank(); ++i) {
      const bool reduced = axes.empty() || std::find(axes.begin(), axes.end(), i) != axes.end() ||
                           std::find(axes.begin(), axes.end(), i - s.rank()) != axes.end();
      if (reduced)
        count *= static_cast<double>(s[static_cast<size_t>(i)] < 0 ? max_batch_
                                                                   : s[static_cast<size_t>(i)]);
      if (!reduced)
        out.push_back(s[static_cast<size_t>(i)]);
      else if (keep)
        out.push_back(1);
    }
    const double b = op == Op::sum ? bound(a) * count : bound(a);
    // Integer sums are i64 (NumPy's rule).
    const DType od = op == Op::sum && is_integral(d) ? DType::i64 : d;
    add({op, {a}, axes, keep, 0, od, Shape(out)}, is_integral(d) ? std::min(b, 2e9) : b);
  }

  void softmax() {
    const int a = pick([&](int v) { return is_float_type(dtype(v)) && shape(v).rank() > 0; });
    if (a < 0) return;
    const int64_t r = shape(a).rank();
    const int64_t axis = static_cast<int64_t>(next(static_cast<uint64_t>(2 * r))) - r;
    const bool log = coin(0.5);
    add({log ? Op::log_softmax : Op::softmax, {a}, {axis}, false, 0, dtype(a), shape(a)},
        log ? 2 * bound(a) + 10 : 1);
  }

  void matmul() {
    const bool ints = coin(0.1);
    const int a = pick([&](int v) {
      const Shape& s = shape(v);
      return (ints ? is_integral(dtype(v)) : is_float_type(dtype(v))) && s.rank() >= 2 &&
             s.back() >= 0;
    });
    if (a < 0) return;
    const Shape& sa = shape(a);
    const int64_t k = sa.back();
    const std::vector<int64_t> batch(sa.dims().begin(), sa.dims().end() - 2);
    int b = pick([&](int v) {
      const Shape& s = shape(v);
      if (dtype(v) != dtype(a) || s.rank() < 2 || s[s.size() - 2] != k) return false;
      return s.rank() == 2 || std::vector<int64_t>(s.dims().begin(), s.dims().end() - 2) == batch;
    });
    if (b < 0 || coin(0.3)) {
      std::vector<int64_t> sb = coin(0.3) ? batch : std::vector<int64_t>{};
      sb.push_back(k);
      sb.push_back(dim());
      b = constant(dtype(a), Shape(sb));
      if (b < 0) return;
    }
    const Shape& sb = shape(b);
    Shape ob;
    broadcast(Shape(batch), Shape(std::vector<int64_t>(sb.dims().begin(), sb.dims().end() - 2)),
              &ob);
    std::vector<int64_t> out = ob.dims();
    out.push_back(sa[sa.size() - 2]);
    out.push_back(sb.back());
    const double bo = bound(a) * bound(b) * static_cast<double>(k);
    add({Op::matmul, {a, b}, {}, false, 0, dtype(a), Shape(out)}, ints ? std::min(bo, 2e9) : bo);
  }

  // A dense layer as training code writes it: x (or x^T) times a captured weight (or a
  // transposed one), then either a bias and an activation (matmul_bias_act when it is relu),
  // or an elementwise chain over the product alone, such as an optimizer update (the product
  // epilogues). In big programs the product often reaches the size at which the JIT computes
  // it in row blocks across threads. The constants come first, so that the last values, which
  // become the results, are the layer's.
  void layer() {
    // Of the inputs' values (a product of constants folds away), f32 most often.
    const bool f32_only = coin(0.8);
    int a = pick([&](int v) {
      const Shape& s = shape(v);
      return (f32_only ? dtype(v) == f32 : is_float_type(dtype(v))) && s.rank() >= 2 &&
             s.back() >= 0 && (s.rank() == 2 || known(s)) && reads_input(v);
    });
    if (a < 0) return;
    const DType d = dtype(a);
    if (shape(a).rank() > 2) {  // flattened to rows, as a dense layer over an image would be
      const Shape rows({numel(shape(a)) / shape(a).back(), shape(a).back()});
      a = add({Op::reshape, {a}, rows.dims(), false, 0, d, rows}, bound(a));
      if (a < 0) return;
    }
    const bool transposed = known(shape(a)) && coin(0.3);
    const int64_t m = shape(a)[transposed ? 1 : 0], k = shape(a)[transposed ? 0 : 1];
    int64_t n = dim();
    // Big programs mostly take the smallest width that reaches the row-block size.
    if (big_ && m > 0 && coin(0.7))
      for (int64_t c : {31, 64, 127, 257, 1000})
        if (m * k * c >= int64_t{1} << 20 && m * c <= max_numel_ && k * c <= max_numel_) {
          n = c;
          break;
        }
    // The product's bound (a constant's is 2) must allow it.
    if (!p_.special && !(bound(a) * 2 * static_cast<double>(k) <= kMaxBound)) return;
    const Shape out({m, n});
    int w = coin(0.3) ? constant(d, Shape({n, k})) : constant(d, Shape({k, n}));
    const bool bias_act = coin(0.5);
    // The bias, or one parameter-shaped constant per op of the update (kScaling for a scaling
    // by a number instead). A batch dim becomes 1 in a constant and broadcasts.
    constexpr int kScaling = -2;
    std::vector<int> operands;
    if (bias_act)
      operands.push_back(constant(d, coin(0.8) ? Shape({n}) : Shape({1, n})));
    else
      for (int i = 0, ops = 1 + static_cast<int>(next(3)); i < ops; ++i)
        operands.push_back(i == 0 || coin(0.5) ? constant(d, out) : kScaling);
    int x = a;
    if (transposed) x = add({Op::transpose, {a}, {1, 0}, false, 0, d, Shape({m, k})}, bound(a));
    if (w >= 0 && shape(w)[0] != k)
      w = add({Op::transpose, {w}, {1, 0}, false, 0, d, Shape({k, n})}, bound(w));
    if (x < 0 || w < 0 || std::find(operands.begin(), operands.end(), -1) != operands.end()) return;
    int y = add({Op::matmul, {x, w}, {}, false, 0, d, out},
                bound(x) * bound(w) * static_cast<double>(k));
    if (bias_act) {
      if (y >= 0)
        y = add({Op::add, {y, operands[0]}, {}, false, 0, d, out}, bound(y) + bound(operands[0]));
      if (y < 0 || coin(0.2)) return;
      const Op act = std::array{Op::relu, Op::relu, Op::relu, Op::tanh, Op::sigmoid}[next(5)];
      add({act, {y}, {}, false, 0, d, out}, act == Op::relu ? bound(y) : 1);
      return;
    }
    // An update such as `p - lr * g`, last op first in `operands`.
    for (auto q = operands.rbegin(); q != operands.rend() && y >= 0; ++q) {
      if (*q == kScaling) {
        const double c = std::array{1e-3, 0.9, -0.5}[next(3)];
        y = add({Op::mul_scalar, {y}, {}, false, c, d, out}, bound(y) * std::abs(c));
      } else {
        const Op op = std::array{Op::sub, Op::add, Op::mul}[next(3)];
        y = add({op, {*q, y}, {}, false, 0, d, out},
                op == Op::mul ? bound(*q) * bound(y) : bound(*q) + bound(y));
      }
    }
  }

  // Whether value v depends on an input of the program.
  bool reads_input(int v) const {
    std::vector<bool> reads(values(), false);
    for (size_t i = 0; i < reads.size(); ++i)
      reads[i] =
          i < p_.inputs.size() || std::any_of(p_.steps[i - p_.inputs.size()].args.begin(),
                                              p_.steps[i - p_.inputs.size()].args.end(),
                                              [&](int u) { return reads[static_cast<size_t>(u)]; });
    return reads[static_cast<size_t>(v)];
  }

  // Splits n into up to `parts` factors (shuffled primes, plus 1s).
  std::vector<int64_t> factor(int64_t n, int parts) {
    std::vector<int64_t> primes;
    for (int64_t f = 2; n > 1;)
      if (n % f == 0) {
        primes.push_back(f);
        n /= f;
      } else {
        ++f;
      }
    std::vector<int64_t> out(static_cast<size_t>(parts), 1);
    for (int64_t f : primes)
      out[next(out.size())] *= f;
    return out;
  }

  void reshape() {
    const int a = pick([&](int v) {
      const Shape& s = shape(v);
      const auto unknown = std::count(s.begin(), s.end(), -1);
      return unknown == 0 || (unknown == 1 && s[0] < 0);
    });
    if (a < 0) return;
    const Shape& s = shape(a);
    const int parts = 1 + static_cast<int>(next(3));
    std::vector<int64_t> out;
    if (known(s)) {
      out = factor(numel(s), parts);
      std::vector<int64_t> attr = out;
      if (coin(0.3)) attr[next(attr.size())] = -1;
      add({Op::reshape, {a}, attr, false, 0, dtype(a), Shape(out)}, bound(a));
    } else {
      out = factor(numel(s) / max_batch_, parts);
      out.insert(out.begin(), -1);
      add({Op::reshape, {a}, out, false, 0, dtype(a), Shape(out)}, bound(a));
    }
  }

  void transpose_or_slice() {
    const int a = pick([&](int v) { return shape(v).rank() > 0; });
    if (a < 0) return;
    const Shape& s = shape(a);
    if (coin(0.5) && s.rank() >= 2) {
      std::vector<int64_t> perm(s.size());
      for (size_t i = 0; i < perm.size(); ++i)
        perm[i] = static_cast<int64_t>(i);
      for (size_t i = perm.size(); i > 1; --i)
        std::swap(perm[i - 1], perm[next(i)]);
      std::vector<int64_t> out;
      for (int64_t i : perm)
        out.push_back(s[static_cast<size_t>(i)]);
      add({Op::transpose, {a}, perm, false, 0, dtype(a), Shape(out)}, bound(a));
      return;
    }
    const int64_t axis = static_cast<int64_t>(next(s.size()));
    const int64_t d = s[static_cast<size_t>(axis)];
    if (d < 0) return;
    const int64_t start = static_cast<int64_t>(next(static_cast<uint64_t>(d)));
    const int64_t stop = start + 1 + static_cast<int64_t>(next(static_cast<uint64_t>(d - start)));
    const int64_t step = 1 + static_cast<int64_t>(next(3));
    Shape out = s;
    out[static_cast<size_t>(axis)] = (stop - start + step - 1) / step;
    add({Op::slice, {a}, {axis, start, stop, step}, false, 0, dtype(a), out}, bound(a));
  }

  void expand_squeeze_or_broadcast() {
    const int a = pick([](int) { return true; });
    const Shape& s = shape(a);
    const uint64_t what = next(3);
    if (what == 0 && s.rank() < 4) {
      const int64_t axis = static_cast<int64_t>(next(s.size() + 1));
      std::vector<int64_t> out = s.dims();
      out.insert(out.begin() + axis, 1);
      add({Op::expand_dims, {a}, {axis}, false, 0, dtype(a), Shape(out)}, bound(a));
    } else if (what == 1) {
      std::vector<int64_t> ones;
      for (size_t i = 0; i < s.size(); ++i)
        if (s[i] == 1) ones.push_back(static_cast<int64_t>(i));
      if (ones.empty()) return;
      const int64_t axis = ones[next(ones.size())];
      std::vector<int64_t> out = s.dims();
      out.erase(out.begin() + axis);
      add({Op::squeeze, {a}, {axis}, false, 0, dtype(a), Shape(out)}, bound(a));
    } else if (s.rank() < 4) {
      std::vector<int64_t> out = s.dims();
      for (auto& e : out)
        if (e == 1 && coin(0.5)) e = dim();
      if (coin(0.5)) out.insert(out.begin(), dim());
      add({Op::broadcast_to, {a}, out, false, 0, dtype(a), Shape(out)}, bound(a));
    }
  }

  void concat() {
    const int a = pick([&](int v) {
      const Shape& s = shape(v);
      return std::any_of(s.begin(), s.end(), [](int64_t d) { return d >= 0; });
    });
    if (a < 0) return;
    const Shape& s = shape(a);
    int64_t axis;
    do
      axis = static_cast<int64_t>(next(s.size()));
    while (s[static_cast<size_t>(axis)] < 0);
    const int b = pick([&](int v) { return dtype(v) == dtype(a) && shape(v) == s; });
    Shape out = s;
    out[static_cast<size_t>(axis)] *= 2;
    add({Op::concat, {a, b < 0 ? a : b}, {axis}, false, 0, dtype(a), out},
        std::max(bound(a), b < 0 ? 0 : bound(b)));
  }

  std::mt19937_64 rng_;
  Program p_;
  std::vector<double> bound_;  // per value: a bound on |x| (normal mode)
  int64_t max_batch_ = 1;
  bool big_ = false;  // sizes up to 1000 and 2^18 elements
  int64_t max_numel_ = 2048;
};

}  // namespace detail

// The random program of `seed` (the same on every platform: only mt19937_64 draws).
inline Program generate(uint64_t seed) {
  return detail::Generator(seed).run();
}

}  // namespace kiln::fuzz
