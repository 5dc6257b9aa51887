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
