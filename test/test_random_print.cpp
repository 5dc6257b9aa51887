// Philox known answers, random draws (reproducibility, thread independence, statistics),
// creation ops, dropout and the tensor printer.

#include <cmath>
#include <sstream>

#include "testing.h"

#include <kiln/core/print.h>
#include <kiln/core/random.h>

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::check_error;

namespace {

using Block = std::array<uint32_t, 4>;

Block ref_block(uint64_t seed, uint64_t index) {
  return philox4x32_10({static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), 0, 0},
                       seed);
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v)
    s += x;
  return s / static_cast<double>(v.size());
}

double var_of(const std::vector<double>& v) {
  const double m = mean_of(v);
  double s = 0;
  for (double x : v)
    s += (x - m) * (x - m);
  return s / static_cast<double>(v.size());
}

}  // namespace

TEST_CASE("philox4x32_10 matches the Random123 known-answer vectors") {
  // Random123's kat_vectors: "philox4x32 10 0 0 0 0 0 0 -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8".
  CHECK(philox4x32_10({0, 0, 0, 0}, 0) == Block{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8});
  CHECK(philox4x32_10({0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, ~uint64_t{0}) ==
        Block{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd});
  const uint64_t key = uint64_t{0x299f31d0} << 32 | 0xa4093822;
  CHECK(philox4x32_10({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, key) ==
        Block{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1});
}

TEST_CASE("random state: seed, advance, set_state") {
  random::seed(42);
  CHECK(random::state().seed == 42);
  CHECK(random::state().offset == 0);
  CHECK(random::advance(5) == 0);
  CHECK(random::advance(3) == 5);
  CHECK(random::state().offset == 8);
  random::set_state({7, 100});
  CHECK(random::state().seed == 7);
  CHECK(random::state().offset == 100);
  // A draw of 10 f32 values reserves ceil(10/4) = 3 blocks.
  random::uniform({10});
  CHECK(random::state().offset == 103);
  // A failed draw leaves the state alone.
  check_error([] { random::uniform({3}, 1, 0); }, {"uniform", "lo"});
  CHECK(random::state().offset == 103);
}

TEST_CASE("draws are reproducible after seed and differ between draws") {
  random::seed(1234);
  auto a = random::uniform({100}).to_vector<float>();
  auto b = random::uniform({100}).to_vector<float>();
  random::seed(1234);
  auto a2 = random::uniform({100}).to_vector<float>();
  auto b2 = random::uniform({100}).to_vector<float>();
  CHECK(a == a2);
  CHECK(b == b2);
  CHECK(a != b);
  random::seed(1235);
  CHECK(random::uniform({100}).to_vector<float>() != a);

  random::seed(5);
  auto n1 = random::normal({33}, 0, 1, f64).to_vector<double>();
  auto r1 = random::randint({33}, 0, 1000).to_vector<int64_t>();
  random::seed(5);
  CHECK(random::normal({33}, 0, 1, f64).to_vector<double>() == n1);
  CHECK(random::randint({33}, 0, 1000).to_vector<int64_t>() == r1);
}

TEST_CASE("large draws equal a serial Philox reference element by element") {
  const int64_t n = 1 << 20;  // big enough to run on several threads
  random::seed(0xC0FFEE);

  SECTION("uniform f32") {
    const auto st = random::state();
    auto v = random::uniform({n}, -2, 3).to_vector<float>();
    bool all = true;
    for (int64_t i = 0; i < n && all; ++i) {
      const Block r = ref_block(st.seed, st.offset + i / 4);
      const double u = static_cast<double>(r[i % 4] >> 8) * 0x1.0p-24;
      const float want = static_cast<float>(-2 + 5 * u);
      if (v[i] != want) {
        INFO("element " << i << ": " << v[i] << " vs " << want);
        all = false;
      }
    }
    CHECK(all);
    CHECK(random::state().offset == st.offset + n / 4);
  }
  SECTION("uniform f64") {
    const auto st = random::state();
    auto v = random::uniform({n}, 0, 1, f64).to_vector<double>();
    bool all = true;
    for (int64_t i = 0; i < n && all; ++i) {
      const Block r = ref_block(st.seed, st.offset + i / 2);
      const int j = static_cast<int>(i % 2);
      const uint64_t bits = (static_cast<uint64_t>(r[2 * j]) << 32 | r[2 * j + 1]) >> 11;
      all = v[i] == static_cast<double>(bits) * 0x1.0p-53;
    }
    CHECK(all);
  }
  SECTION("randint i64") {
    const auto st = random::state();
    auto v = random::randint({n}, -50, 77).to_vector<int64_t>();
    bool all = true;
    for (int64_t i = 0; i < n && all; ++i) {
      const Block r = ref_block(st.seed, st.offset + i / 2);
      const int j = static_cast<int>(i % 2);
      const uint64_t bits = static_cast<uint64_t>(r[2 * j]) << 32 | r[2 * j + 1];
      all = v[i] == -50 + static_cast<int64_t>(bits % 127);
    }
    CHECK(all);
  }
  SECTION("bernoulli") {
    const auto st = random::state();
    auto v = random::bernoulli({n}, 0.3).to_vector<bool>();
    bool all = true;
    const uint64_t threshold = static_cast<uint64_t>(0.3 * 4294967296.0);
    for (int64_t i = 0; i < n && all; ++i) {
      const Block r = ref_block(st.seed, st.offset + i / 4);
      all = v[i] == (r[i % 4] < threshold);
    }
    CHECK(all);
  }
  SECTION("normal f32 is a prefix-stable function of the index") {
    // The first k values of a draw do not depend on the draw's size.
    const auto st = random::state();
    auto big = random::normal({n}).to_vector<float>();
    random::set_state(st);
    auto small = random::normal({13}).to_vector<float>();
    for (size_t i = 0; i < small.size(); ++i)
      CHECK(small[i] == big[i]);
  }
}

TEST_CASE("uniform draws round each operation on its own, on every build") {
  // lo + (hi - lo) * u with the product rounded before the sum: a build that fused them into
  // one multiply-add (as -march=native allows) would differ in the last bit of some values,
  // and from the CUDA kernels, which round step by step too. 0.6 = hi - lo is inexact, so the
  // rounding of the product shows.
  const int64_t n = 4096;
  random::seed(0xF00D);
  const auto st = random::state();
  const double lo = 0.1, hi = 0.7;
  const auto v = random::uniform({n}, lo, hi, f64).to_vector<double>();
  int64_t differ = 0;
  for (int64_t i = 0; i < n; ++i) {
    const Block r = ref_block(st.seed, st.offset + static_cast<uint64_t>(i / 2));
    const int j = static_cast<int>(i % 2);
    const uint64_t bits = (static_cast<uint64_t>(r[2 * j]) << 32 | r[2 * j + 1]) >> 11;
    volatile double product = (hi - lo) * (static_cast<double>(bits) * 0x1.0p-53);
    const double want = lo + product;
    differ += v[static_cast<size_t>(i)] != want;
  }
  CHECK(differ == 0);
}

TEST_CASE("uniform statistics and range") {
  random::seed(7);
  auto v = random::uniform({200000}, 2, 6).to_vector<double>();
  double lo = 1e9, hi = -1e9;
  for (double x : v)
    lo = std::min(lo, x), hi = std::max(hi, x);
  CHECK(lo >= 2);
  CHECK(hi < 6);
  CHECK(std::abs(mean_of(v) - 4) < 0.02);
  CHECK(std::abs(var_of(v) - 16.0 / 12) < 0.02);
  // A tiny float range still never returns hi.
  auto w = random::uniform({10000}, 1.0, 1.0000001).to_vector<float>();
  for (float x : w)
    CHECK(x < 1.0000001f);
  auto d = random::uniform({100000}, 0, 1, f64);
  CHECK(d.dtype() == f64);
  CHECK(std::abs(mean_of(d.to_vector<double>()) - 0.5) < 0.01);
}

TEST_CASE("normal statistics") {
  random::seed(11);
  for (DType dt : {f32, f64}) {
    auto t = random::normal({200001}, 3, 2, dt);
    CHECK(t.dtype() == dt);
    auto v = t.to_vector<double>();
    CHECK(std::abs(mean_of(v) - 3) < 0.03);
    CHECK(std::abs(std::sqrt(var_of(v)) - 2) < 0.03);
    for (double x : v)
      REQUIRE(std::isfinite(x));
  }
}

TEST_CASE("randint range and rough uniformity") {
  random::seed(3);
  auto t = random::randint({100000}, -5, 5, i32);
  CHECK(t.dtype() == i32);
  std::vector<int> counts(10, 0);
  for (int32_t x : t.to_vector<int32_t>()) {
    REQUIRE(x >= -5);
    REQUIRE(x < 5);
    counts[x + 5]++;
  }
  for (int c : counts)
    CHECK(std::abs(c - 10000) < 500);
  check_error([] { random::randint({2}, 3, 3); }, {"randint", "lo"});
  check_error([] { random::randint({2}, 0, 3, f32); }, {"randint", "f32"});
}

TEST_CASE("bernoulli rate") {
  random::seed(9);
  auto t = random::bernoulli({100000}, 0.25);
  CHECK(t.dtype() == boolean);
  auto v = t.to_vector<bool>();
  double ones = 0;
  for (bool b : v)
    ones += b;
  CHECK(std::abs(ones / 100000 - 0.25) < 0.01);
  for (bool b : random::bernoulli({1000}, 0.0).to_vector<bool>())
    CHECK(!b);
  for (bool b : random::bernoulli({1000}, 1.0).to_vector<bool>())
    CHECK(b);
  check_error([] { random::bernoulli({2}, 1.5); }, {"bernoulli", "1.5"});
}

TEST_CASE("rng primitives are registered as stateful creation ops") {
  for (const char* name : {"rng_uniform", "rng_normal", "rng_randint", "rng_bernoulli"}) {
    const OpDef& op = registry().op(name);
    CHECK(op.has(kStateful));
    CHECK(op.has(kCreation));
    CHECK(op.has(kNotDifferentiable));
    CHECK(op.num_inputs() == 0);
    // The _like variant reads its shape from its one input.
    const OpDef& like = registry().op(std::string(name) + "_like");
    CHECK(like.has(kStateful));
    CHECK_FALSE(like.has(kCreation));
    CHECK(like.has(kNotDifferentiable));
    CHECK(like.num_inputs() == 1);
  }
}

TEST_CASE("random *_like draws of known shapes are the sized draws") {
  const Tensor x = zeros({3, 5}, f64);
  random::seed(4);
  const Tensor u = random::uniform_like(x, -1, 1), n = random::normal_like(x);
  const Tensor k = random::randint_like(zeros({7}, i32), 0, 5);
  const Tensor b = random::bernoulli_like(x, 0.5);
  random::seed(4);
  CHECK(u.to_vector<double>() == random::uniform({3, 5}, -1, 1, f64).to_vector<double>());
  CHECK(n.to_vector<double>() == random::normal({3, 5}, 0, 1, f64).to_vector<double>());
  CHECK(k.to_vector<int32_t>() == random::randint({7}, 0, 5, i32).to_vector<int32_t>());
  CHECK(b.to_vector<bool>() == random::bernoulli({3, 5}, 0.5).to_vector<bool>());
  CHECK(u.dtype() == f64);
  CHECK(k.dtype() == i32);
  check_error([] { random::uniform_like(zeros({2}, i32)); }, {"uniform", "i32"});
}

TEST_CASE("dropout") {
  random::seed(21);
  Tensor x = ones({100000});
  CHECK(dropout(x, 0.5, false).id() == x.id());
  CHECK(dropout(x, 0.0, true).id() == x.id());
  Tensor y = dropout(x, 0.25, true);
  CHECK(y.dtype() == f32);
  CHECK(y.shape() == x.shape());
  int64_t kept = 0;
  for (float v : y.to_vector<float>()) {
    if (v != 0) {
      REQUIRE(std::abs(v - 1 / 0.75f) < 1e-6);
      ++kept;
    }
  }
  CHECK(std::abs(static_cast<double>(kept) / 100000 - 0.75) < 0.01);
  check_error([&] { dropout(x, 1.0, true); }, {"dropout", "rate"});
  check_error([&] { dropout(x, -0.1, true); }, {"dropout", "rate"});
}

TEST_CASE("full, zeros, ones and the _like variants") {
  Tensor z = zeros({2, 3});
  CHECK(z.dtype() == f32);
  CHECK(z.shape() == Shape{2, 3});
  check_close(z, std::vector<double>(6, 0.0));
  check_close(ones({4}, i32), {1, 1, 1, 1});
  check_close(full({2, 2}, 2.5, f64), {2.5, 2.5, 2.5, 2.5});
  check_close(full({3}, 7, i64), {7, 7, 7});
  CHECK(full({2}, 1, boolean).to_vector<bool>() == std::vector<bool>{true, true});
  Tensor big = full({1 << 20}, -1.5f);
  auto bv = big.to_vector<float>();
  CHECK(bv.front() == -1.5f);
  CHECK(bv.back() == -1.5f);
  CHECK(full({0, 3}, 1).numel() == 0);
  Tensor x = full({2, 3}, 4, i32);
  CHECK(zeros_like(x).type() == x.type());
  check_close(ones_like(x), std::vector<double>(6, 1.0));
  check_close(full_like(x, 9), std::vector<double>(6, 9.0));
  CHECK(scalar_tensor(3, f32).rank() == 0);
  check_close(full({}, 3.0), {3.0});
  check_error([] { full({2, -1}, 0); }, {"full", "[2,-1]"});
}

TEST_CASE("iota") {
  check_close(iota({2, 3}, 0, i32), {0, 0, 0, 1, 1, 1});
  check_close(iota({2, 3}, 1, f32), {0, 1, 2, 0, 1, 2});
  check_close(iota({2, 3}, -1, i64), {0, 1, 2, 0, 1, 2});
  auto big = iota({3, 100000}, 0, i64).to_vector<int64_t>();
  CHECK(big[0] == 0);
  CHECK(big[99999] == 0);
  CHECK(big[100000] == 1);
  CHECK(big[299999] == 2);
  check_error([] { iota({2, 3}, 2, i32); }, {"iota", "axis"});
}

TEST_CASE("arange") {
  Tensor a = arange(0, 5);
  CHECK(a.dtype() == i64);
  check_close(a, {0, 1, 2, 3, 4});
  check_close(arange(2, 11, 3), {2, 5, 8});
  check_close(arange(5, 0, -2), {5, 3, 1});
  CHECK(arange(3, 3).numel() == 0);
  CHECK(arange(3, 0).numel() == 0);
  Tensor f = arange(0.0, 1.0, 0.25);
  CHECK(f.dtype() == f32);
  check_close(f, {0, 0.25, 0.5, 0.75});
  Tensor g = arange(0, 1, 0.1);
  CHECK(g.numel() == 10);
  check_close(g, {0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}, 1e-6, 1e-7);
  check_close(arange(1, 4, 1, f64), {1, 2, 3});
  CHECK(arange(1, 4, 1, f64).dtype() == f64);
  check_close(arange(-1.5, 1.0, 1.0), {-1.5, -0.5, 0.5});
  check_error([] { arange(0, 5, 0); }, {"arange", "step"});
  check_error([] { arange(0.0, 5.0, 0.0); }, {"arange", "step"});
}

TEST_CASE("linspace") {
  Tensor l = linspace(0, 1, 5);
  CHECK(l.dtype() == f32);
  check_close(l, {0, 0.25, 0.5, 0.75, 1});
  auto v = linspace(-3.3, 7.7, 37, f64).to_vector<double>();
  CHECK(v.front() == -3.3);
  CHECK(v.back() == 7.7);
  auto w = linspace(0.1, 0.7, 7).to_vector<float>();
  CHECK(w.front() == 0.1f);
  CHECK(w.back() == 0.7f);
  check_close(linspace(2, 3, 1), {2});
  CHECK(linspace(2, 3, 0).numel() == 0);
  check_error([] { linspace(0, 1, -1); }, {"linspace", "-1"});
}

TEST_CASE("eye") {
  Tensor e = eye(3);
  CHECK(e.dtype() == f32);
  CHECK(e.shape() == Shape{3, 3});
  check_close(e, {1, 0, 0, 0, 1, 0, 0, 0, 1});
  check_close(eye(2, i32), {1, 0, 0, 1});
  CHECK(eye(0).numel() == 0);
}

TEST_CASE("printing: golden strings") {
  CHECK(to_string(tensor({{1.f, 2.f}, {3.f, 4.f}})) ==
        "tensor([[1., 2.],\n        [3., 4.]], dtype=f32)");
  CHECK(to_string(tensor({{1, 2}, {3, 4}})) == "tensor([[1, 2],\n        [3, 4]], dtype=i32)");
  CHECK(to_string(tensor({1, -20, 300})) == "tensor([  1, -20, 300], dtype=i32)");
  CHECK(to_string(tensor({true, false})) == "tensor([ true, false], dtype=bool)");
  CHECK(to_string(tensor(3.f)) == "tensor(3., dtype=f32)");
  CHECK(to_string(tensor(7)) == "tensor(7, dtype=i32)");
  CHECK(to_string(tensor({0.1f, 0.25f})) == "tensor([0.1 , 0.25], dtype=f32)");
  CHECK(to_string(tensor({1.5, -10.25})) == "tensor([  1.5 , -10.25], dtype=f64)");
  CHECK(to_string(tensor({1.f / 3})) == "tensor([0.33333334], dtype=f32)");
  CHECK(to_string(tensor({1e-5f, 1.f})) == "tensor([1.e-05, 1.e+00], dtype=f32)");
  CHECK(to_string(tensor({1.5e10})) == "tensor([1.5e+10], dtype=f64)");
  CHECK(to_string(tensor({NAN, INFINITY, 1.f})) == "tensor([nan, inf,  1.], dtype=f32)");
  CHECK(to_string(zeros({0})) == "tensor([], dtype=f32)");
  CHECK(to_string(zeros({2, 0})) == "tensor([], shape=[2,0], dtype=f32)");
  CHECK(to_string(tensor({{{1, 2}}, {{3, 4}}})) ==
        "tensor([[[1, 2]],\n\n        [[3, 4]]], dtype=i32)");
}

TEST_CASE("printing: views, summarization, symbolic, fmt and operator<<") {
  Tensor t = tensor({{1, 2, 3}, {4, 5, 6}});
  CHECK(to_string(t.transpose()) ==
        "tensor([[1, 4],\n        [2, 5],\n        [3, 6]], dtype=i32)");

  Tensor big = arange(0, 2000);
  const std::string s = to_string(big);
  CHECK(s == "tensor([   0,    1,    2, ..., 1997, 1998, 1999], dtype=i64)");
  const std::string m = to_string(reshape(arange(0, 2000), {40, 50}));
  CHECK(m.find("...") != std::string::npos);
  CHECK(m.rfind("tensor([[   0,    1,    2, ...,   47,   48,   49],\n", 0) == 0);
  CHECK(m.find("        ...,\n") != std::string::npos);
  // Small tensors are never summarized.
  CHECK(to_string(arange(0, 1000)).find("...") == std::string::npos);

  Tensor sym = Tensor::symbolic({2, 3}, f32, nullptr);
  CHECK(to_string(sym) == "tensor(<symbolic>, shape=[2,3], dtype=f32)");

  std::ostringstream os;
  os << t;
  CHECK(fmt::format("{}", t) == os.str());
  CHECK(os.str() == to_string(t));
}
