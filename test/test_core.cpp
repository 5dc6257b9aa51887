// Core: views, dtype promotion, broadcasting, the dispatch hook, the registry, the
// allocator's counters, and error messages.
#include <thread>

#include <kiln/backends/cpu/loops.h>

#include "testing.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::check_error;

TEST_CASE("registry: every primitive has shape inference and a CPU kernel") {
  const auto ops = registry().all();
  REQUIRE(ops.size() >= 50);
  for (const OpDef* op : ops) {
    INFO("op " << op->name());
    CHECK(op->infer() != nullptr);
    CHECK(op->kernel(DeviceType::cpu) != nullptr);
  }
}

TEST_CASE("views: a slice of a permute of a reshape reads the right elements") {
  // x[i,j,k] = 100*i + 10*j + k over [2,3,4].
  std::vector<int32_t> v;
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k)
        v.push_back(100 * i + 10 * j + k);
  Tensor flat = from_vector(v, {24});
  Tensor x = flat.reshape({2, 3, 4});
  Tensor p = x.permute({2, 0, 1});  // [4,2,3]: p[k,i,j] = x[i,j,k]
  Tensor s = p.slice(0, 1, 4, 2);   // k in {1,3}
  Tensor t = s.slice(2, 0, 3, 2);   // j in {0,2}
  REQUIRE(t.shape() == Shape{2, 2, 2});
  CHECK(t.to_vector<int32_t>() == std::vector<int32_t>{1, 21, 101, 121, 3, 23, 103, 123});
  // Views share storage: no copy was made.
  CHECK(t.data<int32_t>() != nullptr);
  CHECK(x.data<int32_t>() == flat.data<int32_t>());
  CHECK(p.data<int32_t>() == flat.data<int32_t>());
  CHECK_FALSE(p.is_contiguous());
  // Reshaping a non-contiguous view copies only when it must.
  Tensor q = p.reshape({4, 6});
  const auto qv = q.to_vector<int32_t>();
  CHECK(std::vector<int32_t>(qv.begin(), qv.begin() + 6) ==
        std::vector<int32_t>{0, 10, 20, 100, 110, 120});
  CHECK(x[1][2].to_vector<int32_t>() == std::vector<int32_t>{120, 121, 122, 123});
  CHECK(x.transpose().shape() == Shape{2, 4, 3});
  Tensor e = expand_dims(x, 1);
  CHECK(e.shape() == Shape{2, 1, 3, 4});
  CHECK(squeeze(e, 1).shape() == Shape{2, 3, 4});
  Tensor b = broadcast_to(tensor({1, 2, 3}), {2, 3});
  CHECK(b.strides()[0] == 0);
  CHECK(b.to_vector<int32_t>() == std::vector<int32_t>{1, 2, 3, 1, 2, 3});
  CHECK(x.clone().data<int32_t>() != x.data<int32_t>());
}

TEST_CASE("views: ops on strided and broadcast views match dense copies") {
  random::seed(3);
  Tensor a = random::normal({5, 7, 6}, 0, 1, f64);
  Tensor v = a.permute({2, 0, 1}).slice(1, 1, 5, 2);  // [6,2,7], non-contiguous
  Tensor d = v.contiguous();
  CHECK(d.is_contiguous());
  check_close(exp(v), exp(d), 0, 0);
  check_close(v * tensor({2.0}) + v, d * 2.0 + d, 0, 0);
  Tensor row = random::normal({7}, 0, 1, f64);
  check_close(v - row, d - row.reshape({1, 1, 7}), 0, 0);
}

TEST_CASE("promotion: tensor-tensor follows bool < u8 < i32 < i64 < f32 < f64") {
  const DType order[] = {boolean, u8, i32, i64, f32, f64};
  for (DType x : order)
    for (DType y : order) {
      Tensor a = ones({2}, x), b = ones({2}, y);
      DType expected = x > y ? x : y;
      if (expected == boolean) expected = i32;  // arithmetic on bools counts in i32
      INFO(name(x) << " + " << name(y));
      CHECK((a + b).dtype() == expected);
      CHECK((a < b).dtype() == boolean);
      const DType quotient = is_floating(promote(x, y)) ? promote(x, y) : f32;
      CHECK((a / b).dtype() == quotient);
    }
}

TEST_CASE("promotion: C++ scalars are weakly typed") {
  CHECK((ones({2}, i32) + 1).dtype() == i32);
  CHECK((ones({2}, i32) + 1.5).dtype() == f32);
  CHECK((ones({2}, u8) * 2).dtype() == u8);
  CHECK((ones({2}, f32) * 2.0).dtype() == f32);  // a double scalar does not widen f32
  CHECK((2.0 * ones({2}, f64)).dtype() == f64);
  CHECK((ones({2}, boolean) + 1).dtype() == i32);
  check_close(1.0 - tensor({0.25f}), {0.75});
  check_close(tensor({7, -7}) / 2, {3.5, -3.5});
  check_close(floor_div(tensor({7, -7, 7, -7}), tensor({2, 2, -2, -2})), {3, -4, -4, 3});
  check_close(floor_div(tensor({7.5, -7.5}), 2.0), {3, -4});
}

TEST_CASE("broadcasting table") {
  struct Row {
    Shape a, b, out;
  };
  const Row rows[] = {
      {{}, {3}, {3}},           {{3}, {}, {3}},
      {{2, 1}, {1, 3}, {2, 3}}, {{4, 1, 5}, {3, 1}, {4, 3, 5}},
      {{1}, {2, 2}, {2, 2}},    {{2, 3}, {3}, {2, 3}},
      {{0, 3}, {1, 3}, {0, 3}}, {{1, 1, 1}, {7}, {1, 1, 7}},
  };
  for (const auto& r : rows) {
    Tensor a = ones(r.a), b = ones(r.b);
    Tensor c = a + b;
    INFO(r.a.str() << " + " << r.b.str());
    CHECK(c.shape() == r.out);
    for (double v : c.to_vector<double>())
      CHECK(v == 2.0);
  }
  // Values, not just shapes: out[i,j] = a[i] * 10 + b[j].
  Tensor col = tensor({{1.0}, {2.0}}), row = tensor({1.0, 2.0, 3.0});
  check_close(col * 10.0 + row, {11, 12, 13, 21, 22, 23});
  check_error([] { ones({2, 3}) + ones({2}); }, {"add", "[2,3]", "[2]", "broadcast"});
}

namespace {
struct Recorder : DispatchHook {
  std::vector<std::string> seen;
  void observe(const OpDef& op, std::span<const Tensor> in, const Attrs&,
               std::span<const Tensor> out) override {
    seen.push_back(fmt::format("{}:{}->{}", op.name(), in.size(), out[0].type_str()));
  }
};
struct Redirect : DispatchHook {
  bool redirect(const OpDef& op, std::span<const Tensor>, const Attrs&,
                std::vector<Tensor>& out) override {
    if (op.name() != "exp") return false;
    out = {full({1}, 42.0)};
    return true;
  }
};
}  // namespace

TEST_CASE("split_at: a shape as [outer, n, inner] around an axis") {
  const Shape s{2, 3, 4, 5};
  const AxisSplit a = split_at(s, 0), b = split_at(s, 2), c = split_at(s, 3);
  CHECK((a.outer == 1 && a.n == 2 && a.inner == 60));
  CHECK((b.outer == 6 && b.n == 4 && b.inner == 5));
  CHECK((c.outer == 24 && c.n == 5 && c.inner == 1));
  const AxisSplit z = split_at(Shape{3, 0, 2}, 1);
  CHECK((z.outer == 3 && z.n == 0 && z.inner == 2));
}

TEST_CASE("dispatch: a per-thread hook observes primitives and can redirect them") {
  Tensor x = tensor({1.f, 2.f});
  Recorder rec;
  {
    HookScope scope(&rec);
    Tensor y = exp(x) * 2.f;
    (void)y;
  }
  Tensor after = x + x;  // not recorded: the scope ended
  REQUIRE(rec.seen.size() == 2);
  CHECK(rec.seen[0] == "exp:1->f32[2]");
  CHECK(rec.seen[1] == "mul:2->f32[2]");

  // Hooks are per thread: another thread's ops are not seen.
  Recorder rec2;
  {
    HookScope scope(&rec2);
    std::thread([&] { (void)(x + x); }).join();
    {
      SuspendHooks quiet;
      (void)(x + x);
    }
  }
  CHECK(rec2.seen.empty());

  Redirect red;
  Recorder outer;
  HookScope s1(&outer);
  HookScope s2(&red);
  CHECK(exp(x).to_vector<float>() == std::vector<float>{42.f});
  CHECK(outer.seen.size() >= 1);
  CHECK(outer.seen.back() == "exp:1->f32[1]");
}

TEST_CASE("allocator: live and peak bytes follow tensors") {
  memory::reset_peak();
  const auto before = memory::cpu_stats();
  {
    Tensor t = zeros({1000}, f64);  // 8000 bytes, rounded to 64
    const auto during = memory::cpu_stats();
    CHECK(during.live_bytes - before.live_bytes == 8000);
    CHECK(reinterpret_cast<uintptr_t>(t.data<double>()) % 64 == 0);
  }
  const auto after = memory::cpu_stats();
  CHECK(after.live_bytes == before.live_bytes);
  CHECK(after.peak_bytes >= before.live_bytes + 8000);
  // Views do not allocate.
  Tensor big = zeros({256, 256});
  const auto s0 = memory::cpu_stats();
  Tensor v = big.transpose().slice(0, 0, 128).reshape({128, 1, 256});
  CHECK(memory::cpu_stats().live_bytes == s0.live_bytes);
}

TEST_CASE("errors name the op, the shapes and the dtypes") {
  check_error(
      [] {
        matmul(ones({2, 3}), ones({4, 5}));
      },
      {"matmul: inner dimensions differ: a f32[2,3] vs b f32[4,5]"});
  check_error([] { ones({2, 3}).reshape({4}); }, {"reshape", "f32[2,3]", "[4]"});
  check_error([] { ones({2, 3}).item<float>(); }, {"item", "6 elements", "f32[2,3]"});
  check_error([] { ones({2, 3}).slice(1, 0, 5); }, {"slice", "out of range", "f32[2,3]"});
  check_error([] { ones({2, 3}).permute({0, 0}); }, {"transpose", "permutation"});
  check_error([] { sum(ones({2, 3}), {2}); }, {"sum", "axis 2", "rank 2"});
  check_error([] { ones({2})[5]; }, {"index", "5", "f32[2]"});
  check_error([] { floor_div(tensor({1, 2}), tensor({1, 0})); }, {"floor_div", "division by zero"});
  check_error([] { gather(ones({3, 2}), tensor({0, 3})); }, {"gather", "index 3", "f32[3,2]"});
  check_error([] { concat({ones({2, 3}), ones({2, 4}, i32)}, 0); }, {"concat", "[2,4]"});
  check_error([] { broadcast_to(ones({3}), {2, 2}); }, {"broadcast_to", "f32[3]", "[2,2]"});
  check_error([] { where(ones({2}), ones({3}), ones({2})); }, {"where", "[3]"});
  check_error([] { Tensor().shape(); }, {"undefined"});
}

TEST_CASE("cpu loop plan collapses dims where every operand is linear") {
  Tensor a = zeros({4, 5, 6});
  Tensor row = zeros({6});
  auto p = cpu::plan_loop(a.shape(), std::vector<Tensor>{a, a});
  CHECK(p.shape == std::vector<int64_t>{120});
  auto q = cpu::plan_loop(a.shape(), std::vector<Tensor>{a, row});
  CHECK(q.shape == std::vector<int64_t>{20, 6});
}
