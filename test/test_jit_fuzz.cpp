// The JIT's differential fuzzer as a test: 300 seeded random programs (test/jit_fuzz_gen.h),
// each run compiled and on the interpreter and compared. A failure prints the seed, the
// program, the optimized IR and the same for the reduced program; `jit_fuzz` (scripts/fuzz.sh
// jit MINUTES) runs further seeds for a while.
#include <map>
#include <set>

#include "jit_fuzz_check.h"
#include "testing.h"

using namespace kiln;

TEST_CASE("jit_fuzz: the generator covers every op, dtype and mode, and its types are right") {
  std::set<fuzz::Op> ops;
  std::set<DType> dtypes;
  int dynamic = 0, special = 0, steps = 0;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    const fuzz::Program p = fuzz::generate(seed);
    CHECK(fuzz::to_string(fuzz::generate(seed)) == fuzz::to_string(p));  // deterministic
    dynamic += !p.batches.empty();
    special += p.special;
    steps += static_cast<int>(p.steps.size());
    for (const auto& s : p.steps) {
      ops.insert(s.op);
      dtypes.insert(s.dtype);
    }
  }
  CHECK(ops.size() == static_cast<size_t>(fuzz::Op::concat) + 1);
  CHECK(dtypes == std::set<DType>{DType::boolean, DType::i32, DType::i64, f32, f64});
  CHECK(dynamic > 50);
  CHECK(special > 20);
  CHECK(steps > 300 * 6);
}

TEST_CASE("jit_fuzz: the oracle's f32 rules: rounding, overflowing sums, shared roundings") {
  CHECK(fuzz::rounded_to_f32(9e76) == INFINITY);
  CHECK(fuzz::rounded_to_f32(-0x1.ffffffp127) == -INFINITY);
  CHECK(fuzz::rounded_to_f32(0x1.fffffefp127) == 0x1.fffffep127);  // below halfway: FLT_MAX
  CHECK(fuzz::rounded_to_f32(0.1) == static_cast<double>(0.1f));
  // An f32 relu over a product whose f32 partial sums overflow: the interpreter's order gave
  // NaN (then 0), the compiled one inf, and f64 9e76, which is inf in f32.
  const std::vector<Tensor> truth{from_vector<double>({9e76, 1.0}, {2})};
  const auto f32s = [](float x, float y) {
    return std::vector<Tensor>{from_vector<float>({x, y}, {2})};
  };
  CHECK(fuzz::compare(f32s(INFINITY, 1.f), f32s(0.f, 1.f), &truth).empty());
  CHECK_FALSE(fuzz::compare(f32s(-INFINITY, 1.f), f32s(0.f, 1.f), &truth).empty());
  // Where the interpreter gave the inf, a compiled 0 is still a defect.
  CHECK_FALSE(fuzz::compare(f32s(0.f, 1.f), f32s(INFINITY, 1.f), &truth).empty());
  // Programs from the fuzzer's runs of stop 18 and 19 whose f32 sums overflow in one order
  // and not in another: a dot product over -inf and -3e38 * -1.19, then a relu; a sum of
  // 2.9e38, 1.8e38 and -inf; a relu over a product that is 9e76 in f64; a sigmoid, a tanh and a
  // comparison over products whose terms overflow to infs of both signs; a relu over one
  // whose f64 value, 1.26e38, is finite in f32 (compiled inf, interpreted NaN then 0).
  for (uint64_t seed : {uint64_t{1795738830119}, uint64_t{1795738833887}, uint64_t{1795739917239},
                        uint64_t{1795748181943}, uint64_t{1795748759543}, uint64_t{1795748778159},
                        uint64_t{1795749615559}, uint64_t{1795749623383}}) {
    CAPTURE(seed);
    CHECK_FALSE(fuzz::run(fuzz::generate(seed)).defect());
  }
  // A sin over a sum of 17 exps, 40.6008568 compiled and 40.600853 interpreted (1 ulp apart;
  // f64 40.6008529), read by up to 17 terms of each element of a product: compiled 4.6e-5 from
  // f64, 42 times the interpreter's own largest error (seed 1795749626779, stop 19).
  CHECK_FALSE(fuzz::run(fuzz::generate(1795749626779)).defect());
  // equal(x, log_softmax(x)) over columns that are log-probabilities already: the same
  // numbers by two roads, 1 ulp apart compiled (seed 1795756271152, stop 20).
  CHECK_FALSE(fuzz::run(fuzz::generate(1795756271152)).defect());
  const std::vector<Tensor> near{from_vector<double>({-1.2916721698680356, 2.0}, {2})};
  CHECK(fuzz::compare(f32s(-1.2916252f, 2.f), f32s(-1.2916710f, 2.f), &near).empty());
  CHECK_FALSE(fuzz::compare(f32s(-1.2906252f, 2.f), f32s(-1.2916710f, 2.f), &near).empty());
}

TEST_CASE("jit_fuzz: a comparison of two nearly equal floats is a near tie, of one value not") {
  // x - 0.5 against x - 0.5 + 1e-9: a near tie; x against x: never one; x against x + 1 not.
  using fuzz::Op;
  fuzz::Program p;
  p.seed = 7;
  p.inputs = {{f32, Shape{4}}, {f32, Shape{4}}, {f32, Shape{4}}};
  const auto step = [](Op op, std::vector<int> args, double scalar, DType d) {
    fuzz::Step s;
    s.op = op;
    s.args = std::move(args);
    s.scalar = scalar;
    s.dtype = d;
    s.shape = Shape{4};
    return s;
  };
  p.steps = {step(Op::add_scalar, {0}, -0.5, f32),       step(Op::add_scalar, {3}, 1e-9, f32),
             step(Op::equal, {3, 4}, 0, DType::boolean), step(Op::equal, {0, 0}, 0, DType::boolean),
             step(Op::add_scalar, {0}, 1.0, f32),        step(Op::less, {0, 7}, 0, DType::boolean)};
  p.outputs = {5, 6, 8};
  const std::vector<Tensor> in = fuzz::make_inputs(p, 1, 0);
  CHECK(fuzz::near_ties(p, in) == std::vector<bool>{true, false, false});
}

TEST_CASE("jit_fuzz: 300 seeded programs, compiled, match the interpreter") {
  int defects = 0;
  for (uint64_t seed = 0; seed < 300; ++seed) {
    const fuzz::Program p = fuzz::generate(seed);
    INFO(fuzz::to_string(p));
    fuzz::Outcome o;
    REQUIRE_NOTHROW(o = fuzz::run(p));  // a GeneratorError is the generator's bug
    CHECK(o.verdict != fuzz::Verdict::reference_error);
    if (o.defect()) {
      ++defects;
      FAIL_CHECK(fuzz::reduce_and_report(p, o));
    }
  }
  CHECK(defects == 0);
}

// Big programs end in a dense layer. These seeds' layers are large enough for the JIT's
// row-block roads: a product paired with its elementwise update (product epilogues), and
// seed 2085's transposed x times W plus bias and relu as one matmul_bias_act of 2M
// multiply-adds over 1000 rows. The IR checks keep the list honest when the generator changes.
TEST_CASE("jit_fuzz: dense layers computed in row blocks match the interpreter") {
  const std::pair<uint64_t, const char*> cases[] = {{1221, "row blocks into the next kernel"},
                                                    {1733, "row blocks into the next kernel"},
                                                    {1973, "row blocks into the next kernel"},
                                                    {2021, "row blocks into the next kernel"},
                                                    {2357, "row blocks into the next kernel"},
                                                    {3653, "row blocks into the next kernel"},
                                                    {2085, "matmul_bias_act"}};
  for (const auto& [seed, marker] : cases) {
    const fuzz::Program p = fuzz::generate(seed);
    INFO(fuzz::to_string(p));
    const std::vector<Tensor> in = fuzz::make_inputs(p, 1, 0);
    const std::string ir = fuzz::make_function(p, true)
                               .get_concrete_function(in[0], in[1], in[2])
                               .ir(IRStage::optimized);
    CHECK(ir.find(marker) != std::string::npos);
    const fuzz::Outcome o = fuzz::run(p);
    CHECK(o.verdict == fuzz::Verdict::ok);
    if (o.defect()) FAIL_CHECK(fuzz::reduce_and_report(p, o));
  }
}
