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
