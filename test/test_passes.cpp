// The JIT's simplification passes: golden IR text before and after each pass, graphs each pass
// must leave alone (inexact identities, side effects, state), the pipeline's verification and
// dumps, and a property test: every function of the tracer corpus, optimized, interprets to
// the same results as the traced graph.
#include <algorithm>
#include <bit>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include <unistd.h>

#include <kiln/jit/pipeline.h>
#include <kiln/tracer/trace.h>

#include "corpus.h"

using namespace kiln;
using kiln::testing::check_close;
using kiln::testing::check_error;

namespace {

// Parses and verifies `text`, runs `pass`, checks the result verifies and reads back from its
// text, and returns that text. `changed` receives what the pass returned.
std::string after(const jit::Pass& pass, const std::string& text, bool* changed = nullptr) {
  ir::Graph g = ir::parse(text);
  ir::verify(g);
  const bool c = pass.run(g);
  if (changed) *changed = c;
  ir::verify(g);
  const std::string out = ir::print(g);
  CHECK(ir::print(ir::parse(out)) == out);
  return out;
}

// The pass must report no change and leave the text as it was.
void check_unchanged(const jit::Pass& pass, const std::string& text) {
  bool changed = true;
  const std::string out = after(pass, text, &changed);
  CHECK_FALSE(changed);
  CHECK(out == ir::print(ir::parse(text)));
}

const char* const kDraw =
    "rng_uniform() {lo = 0.0, hi = 1.0, shape = [3], dtype = f32, seed = 0, offset = 0, "
    "blocks = 1} : f32[3]";

}  // namespace

// ---- constant folding ----------------------------------------------------------------------

TEST_CASE("constant_folding: chains of constant inputs fold in one sweep") {
  bool changed = false;
  const std::string out = after(jit::constant_folding(), R"(
func @f(%0: f32[3]) -> (f32[3], i32[2]) {
  %1 = constant() {index = 0} : f32[]
  %2 = add(%1, %1) : f32[]
  %3 = neg(%2) : f32[]
  %4 = mul(%0, %3) : f32[3]
  %5 = iota() {shape = [2], axis = 0, dtype = i32} : i32[2]
  return %4, %5
}
constants:
  0 f32[] = 2.0
)",
                                &changed);
  CHECK(changed);
  CHECK(out ==
        "func @f(%0: f32[3]) -> (f32[3], i32[2]) {\n"
        "  %1 = constant() {index = 0} : f32[]\n"
        "  %2 = constant() {index = 1} : f32[]\n"
        "  %3 = constant() {index = 2} : f32[]\n"
        "  %4 = mul(%0, %3) : f32[3]\n"
        "  %5 = constant() {index = 3} : i32[2]\n"
        "  return %4, %5\n"
        "}\n"
        "constants:\n"
        "  0 f32[] = 2.0\n"
        "  1 f32[] = 4.0\n"
        "  2 f32[] = -4.0\n"
        "  3 i32[2] = [0, 1]\n");
}

TEST_CASE("constant_folding: leaves state, big or unknown results and kernel errors alone") {
  check_unchanged(jit::constant_folding(), std::string(R"(
func @f(%0: f32[2]) -> (f32[3], i32[2], f32[2], f32[600], f32[?], f32[300]) {
  %1 = )") + kDraw + R"(
  %2 = constant() {index = 0} : i32[2]
  %3 = constant() {index = 1} : i32[]
  %4 = floor_div(%2, %3) : i32[2]
  %5 = read_variable() {var = 0} : f32[2]
  %6 = constant() {index = 2} : f32[]
  %7 = add(%5, %6) : f32[2]
  %8 = full() {shape = [600], value = 1.0, dtype = f32} : f32[600]
  %9 = fill_like(%2) {value = 1.0, dtype = f32} : f32[?]
  %10 = broadcast_to(%6) {shape = [300]} : f32[300]
  return %1, %4, %7, %8, %9, %10
}
variables:
  0 "v" f32[2]
constants:
  0 i32[2] = [7, 8]
  1 i32[] = 0
  2 f32[] = 1.5
)");
}

// ---- algebraic simplification --------------------------------------------------------------

TEST_CASE("algebraic_simplify: exact identities") {
  const std::string out = after(jit::algebraic_simplify(), R"(
func @f(%0: f32[3], %1: i32[3]) -> (f32[3], f32[3], f32[3], f32[3], f32[3], i32[3], i32[3]) {
  %2 = constant() {index = 0} : f32[]
  %3 = constant() {index = 1} : f32[]
  %4 = constant() {index = 2} : f32[]
  %5 = constant() {index = 3} : i32[1]
  %6 = mul(%0, %2) : f32[3]
  %7 = mul(%2, %0) : f32[3]
  %8 = div(%0, %2) : f32[3]
  %9 = add(%3, %0) : f32[3]
  %10 = sub(%0, %4) : f32[3]
  %11 = add(%1, %5) : i32[3]
  %12 = neg(%1) : i32[3]
  %13 = neg(%12) : i32[3]
  return %6, %7, %8, %9, %10, %11, %13
}
constants:
  0 f32[] = 1.0
  1 f32[] = -0.0
  2 f32[] = 0.0
  3 i32[1] = [0]
)");
  CHECK(out ==
        "func @f(%0: f32[3], %1: i32[3]) -> (f32[3], f32[3], f32[3], f32[3], f32[3], i32[3], "
        "i32[3]) {\n"
        "  %2 = constant() {index = 0} : f32[]\n"
        "  %3 = constant() {index = 1} : f32[]\n"
        "  %4 = constant() {index = 2} : f32[]\n"
        "  %5 = constant() {index = 3} : i32[1]\n"
        "  %6 = neg(%1) : i32[3]\n"
        "  return %0, %0, %0, %0, %0, %1, %1\n"
        "}\n"
        "constants:\n"
        "  0 f32[] = 1.0\n"
        "  1 f32[] = -0.0\n"
        "  2 f32[] = 0.0\n"
        "  3 i32[1] = [0]\n");
}

TEST_CASE("algebraic_simplify: identities that are not exact, or that broadcast, stay") {
  // x + 0.0 is +0.0 at x = -0.0; x - (-0.0) is the same sum; 1 * x with x: f32[1] and a
  // 1 of shape [3] broadcasts x (also when x's dim is unknown); x * 0 is NaN at inf; 0 - x is
  // -x; 1 / x is not x.
  check_unchanged(jit::algebraic_simplify(), R"(
func @f(%0: f32[3], %1: f32[1], %2: f32[?]) -> (f32[3], f32[3], f32[3], f32[3], f32[3], f32[3], f32[3]) {
  %3 = constant() {index = 0} : f32[]
  %4 = constant() {index = 1} : f32[]
  %5 = constant() {index = 2} : f32[3]
  %6 = constant() {index = 3} : f32[]
  %7 = add(%0, %3) : f32[3]
  %8 = sub(%0, %4) : f32[3]
  %9 = mul(%1, %5) : f32[3]
  %10 = mul(%0, %3) : f32[3]
  %11 = sub(%3, %0) : f32[3]
  %12 = div(%6, %0) : f32[3]
  %13 = mul(%2, %5) : f32[3]
  return %7, %8, %9, %10, %11, %12, %13
}
constants:
  0 f32[] = 0.0
  1 f32[] = -0.0
  2 f32[3] = [1.0, 1.0, 1.0]
  3 f32[] = 1.0
)");
}

TEST_CASE("algebraic_simplify: transposes, reshapes, casts and broadcasts") {
  const std::string out = after(jit::algebraic_simplify(), R"(
func @f(%0: f32[2,3,4]) -> (f32[2,3,4], f32[3,4,2], f32[24], f32[2,3,4], f32[2,3,4], f32[2,3,4], f64[2,3,4]) {
  %1 = transpose(%0) {perm = [1, 2, 0]} : f32[3,4,2]
  %2 = transpose(%1) {perm = [2, 0, 1]} : f32[2,3,4]
  %3 = transpose(%0) {perm = [1, 0, 2]} : f32[3,2,4]
  %4 = transpose(%3) {perm = [0, 2, 1]} : f32[3,4,2]
  %5 = reshape(%0) {shape = [6, 4]} : f32[6,4]
  %6 = reshape(%5) {shape = [24]} : f32[24]
  %7 = reshape(%6) {shape = [2, 3, 4]} : f32[2,3,4]
  %8 = cast(%0) {dtype = f32} : f32[2,3,4]
  %9 = broadcast_to(%0) {shape = [2, 3, 4]} : f32[2,3,4]
  %10 = cast(%0) {dtype = f64} : f64[2,3,4]
  return %2, %4, %6, %7, %8, %9, %10
}
)");
  CHECK(out ==
        "func @f(%0: f32[2,3,4]) -> (f32[2,3,4], f32[3,4,2], f32[24], f32[2,3,4], f32[2,3,4], "
        "f32[2,3,4], f64[2,3,4]) {\n"
        "  %1 = transpose(%0) {perm = [1, 2, 0]} : f32[3,4,2]\n"
        "  %2 = transpose(%0) {perm = [1, 0, 2]} : f32[3,2,4]\n"
        "  %3 = transpose(%0) {perm = [1, 2, 0]} : f32[3,4,2]\n"
        "  %4 = reshape(%0) {shape = [6, 4]} : f32[6,4]\n"
        "  %5 = reshape(%0) {shape = [24]} : f32[24]\n"
        "  %6 = cast(%0) {dtype = f64} : f64[2,3,4]\n"
        "  return %0, %3, %5, %0, %0, %0, %6\n"
        "}\n");
}

TEST_CASE("algebraic_simplify: unknown dims and copied dims") {
  // reshape to [-1, 3] and broadcast_to [-1, 3] of f32[?,3] are identities, and so is a
  // reshape that copies every dim in place; a reshape that moves the unknown dim, and a
  // broadcast that may grow dim 0, are not. A reshape whose copy_dims index its own input
  // (here the flattened one) keeps that input.
  const std::string out = after(jit::algebraic_simplify(), R"(
func @f(%0: f32[?,3], %1: f32[?,?]) -> (f32[?,3], f32[?,3], f32[3,?], f32[5,3], f32[?,?], f32[?,1]) {
  %2 = reshape(%0) {shape = [-1, 3]} : f32[?,3]
  %3 = broadcast_to(%0) {shape = [-1, 3]} : f32[?,3]
  %4 = reshape(%0) {shape = [3, -1]} : f32[3,?]
  %5 = broadcast_to(%0) {shape = [5, 3]} : f32[5,3]
  %6 = reshape(%1) {shape = [-1, -1], copy_dims = [0, 1]} : f32[?,?]
  %7 = reshape(%1) {shape = [-1]} : f32[?]
  %8 = reshape(%7) {shape = [-1, 1], copy_dims = [0, -1]} : f32[?,1]
  return %2, %3, %4, %5, %6, %8
}
)");
  CHECK(out ==
        "func @f(%0: f32[?,3], %1: f32[?,?]) -> (f32[?,3], f32[?,3], f32[3,?], f32[5,3], "
        "f32[?,?], f32[?,1]) {\n"
        "  %2 = reshape(%0) {shape = [3, -1]} : f32[3,?]\n"
        "  %3 = broadcast_to(%0) {shape = [5, 3]} : f32[5,3]\n"
        "  %4 = reshape(%1) {shape = [-1]} : f32[?]\n"
        "  %5 = reshape(%4) {shape = [-1, 1], copy_dims = [0, -1]} : f32[?,1]\n"
        "  return %0, %0, %2, %3, %1, %5\n"
        "}\n");
}

TEST_CASE("algebraic_simplify: a reshape that drops a reduction's kept dims") {
  // %3 and %5 become the reductions without keepdims (the kept ones are left for dce). %7's
  // reduction is also returned, %9's shape is unknown, and %10 does not drop the kept dim:
  // those stay.
  const std::string out = after(jit::algebraic_simplify(), R"(
func @f(%0: f32[4,3], %1: f32[?,3]) -> (f32[3], f32[4], f32[1,3], f32[3], f32[?], f32[3,1]) {
  %2 = reduce_sum(%0) {axes = [0], keepdims = true} : f32[1,3]
  %3 = reshape(%2) {shape = [3]} : f32[3]
  %4 = reduce_max(%0) {axes = [1], keepdims = true} : f32[4,1]
  %5 = reshape(%4) {shape = [4]} : f32[4]
  %6 = reduce_min(%0) {axes = [0], keepdims = true} : f32[1,3]
  %7 = reshape(%6) {shape = [3]} : f32[3]
  %8 = reduce_sum(%1) {axes = [1], keepdims = true} : f32[?,1]
  %9 = reshape(%8) {shape = [-1]} : f32[?]
  %10 = reduce_prod(%0) {axes = [0], keepdims = true} : f32[1,3]
  %11 = reshape(%10) {shape = [3, 1]} : f32[3,1]
  return %3, %5, %6, %7, %9, %11
}
)");
  CHECK(out ==
        "func @f(%0: f32[4,3], %1: f32[?,3]) -> (f32[3], f32[4], f32[1,3], f32[3], f32[?], "
        "f32[3,1]) {\n"
        "  %2 = reduce_sum(%0) {axes = [0], keepdims = true} : f32[1,3]\n"
        "  %3 = reduce_sum(%0) {axes = [0], keepdims = false} : f32[3]\n"
        "  %4 = reduce_max(%0) {axes = [1], keepdims = true} : f32[4,1]\n"
        "  %5 = reduce_max(%0) {axes = [1], keepdims = false} : f32[4]\n"
        "  %6 = reduce_min(%0) {axes = [0], keepdims = true} : f32[1,3]\n"
        "  %7 = reshape(%6) {shape = [3]} : f32[3]\n"
        "  %8 = reduce_sum(%1) {axes = [1], keepdims = true} : f32[?,1]\n"
        "  %9 = reshape(%8) {shape = [-1]} : f32[?]\n"
        "  %10 = reduce_prod(%0) {axes = [0], keepdims = true} : f32[1,3]\n"
        "  %11 = reshape(%10) {shape = [3, 1]} : f32[3,1]\n"
        "  return %3, %5, %6, %7, %9, %11\n"
        "}\n");
}

TEST_CASE("algebraic_simplify: a broadcast the consumer would do itself is bypassed") {
  // mul broadcasts the scalar to [3,4] itself; add(%1, ...) would give f32[4] without the
  // broadcast, so that one stays.
  const std::string out = after(jit::algebraic_simplify(), R"(
func @f(%0: f32[3,4], %1: f32[4]) -> (f32[3,4], f32[3,4]) {
  %2 = constant() {index = 0} : f32[]
  %3 = broadcast_to(%2) {shape = [3, 4]} : f32[3,4]
  %4 = mul(%0, %3) : f32[3,4]
  %5 = add(%1, %3) : f32[3,4]
  return %4, %5
}
constants:
  0 f32[] = 2.0
)");
  CHECK(out ==
        "func @f(%0: f32[3,4], %1: f32[4]) -> (f32[3,4], f32[3,4]) {\n"
        "  %2 = constant() {index = 0} : f32[]\n"
        "  %3 = broadcast_to(%2) {shape = [3, 4]} : f32[3,4]\n"
        "  %4 = mul(%0, %2) : f32[3,4]\n"
        "  %5 = add(%1, %3) : f32[3,4]\n"
        "  return %4, %5\n"
        "}\n"
        "constants:\n"
        "  0 f32[] = 2.0\n");
}

// ---- CSE -------------------------------------------------------------------------------------

TEST_CASE("cse: identical pure nodes merge; bit-different constants and attrs do not") {
  const std::string out = after(jit::cse(), R"(
func @f(%0: f32[3], %1: f32[3]) -> (f32[3], f32[3], f32[3], f32[3], f32[3], f32[], f32[], f32[3], f32[3]) {
  %2 = exp(%0) : f32[3]
  %3 = exp(%0) : f32[3]
  %4 = add(%0, %1) : f32[3]
  %5 = add(%1, %0) : f32[3]
  %6 = maximum(%0, %1) : f32[3]
  %7 = maximum(%1, %0) : f32[3]
  %8 = constant() {index = 0} : f32[]
  %9 = constant() {index = 1} : f32[]
  %10 = constant() {index = 2} : f32[]
  %11 = fill_like(%0) {value = 0.0, dtype = f32} : f32[3]
  %12 = fill_like(%0) {value = -0.0, dtype = f32} : f32[3]
  %13 = mul(%2, %3) : f32[3]
  return %13, %4, %5, %6, %7, %9, %10, %11, %12
}
constants:
  0 f32[] = 0.0
  1 f32[] = 0.0
  2 f32[] = -0.0
)");
  CHECK(out ==
        "func @f(%0: f32[3], %1: f32[3]) -> (f32[3], f32[3], f32[3], f32[3], f32[3], f32[], "
        "f32[], f32[3], f32[3]) {\n"
        "  %2 = exp(%0) : f32[3]\n"
        "  %3 = add(%0, %1) : f32[3]\n"
        "  %4 = maximum(%0, %1) : f32[3]\n"
        "  %5 = maximum(%1, %0) : f32[3]\n"
        "  %6 = constant() {index = 0} : f32[]\n"
        "  %7 = constant() {index = 1} : f32[]\n"
        "  %8 = fill_like(%0) {value = 0.0, dtype = f32} : f32[3]\n"
        "  %9 = fill_like(%0) {value = -0.0, dtype = f32} : f32[3]\n"
        "  %10 = mul(%2, %2) : f32[3]\n"
        "  return %10, %3, %3, %4, %5, %6, %7, %8, %9\n"
        "}\n"
        "constants:\n"
        "  0 f32[] = 0.0\n"
        "  1 f32[] = -0.0\n");
}

TEST_CASE("cse: draws, assigns and reads across an assign never merge") {
  check_unchanged(jit::cse(), std::string(R"(
func @f() -> (f32[2], f32[2], f32[3], f32[3], f32[2]) {
  %0 = read_variable() {var = 0} : f32[2]
  assign_variable(%0) {var = 0}
  assign_variable(%0) {var = 0}
  %1 = read_variable() {var = 0} : f32[2]
  %2 = )") + kDraw + "\n  %3 = " + kDraw +
                                  R"(
  %4 = constant() {index = 0} : bool[]
  cond(%4) {then_inputs = 0} regions {
    func @then() -> () {
      %0 = read_variable() {var = 1} : f32[2]
      assign_variable(%0) {var = 0}
      return
    }
    func @else() -> () {
      return
    }
  }
  %5 = read_variable() {var = 0} : f32[2]
  return %0, %1, %2, %3, %5
}
variables:
  0 "a" f32[2]
  1 "b" f32[2]
constants:
  0 bool[] = true
)");
  // Two reads with only an assign to another variable between them are one value.
  const std::string out = after(jit::cse(), R"(
func @f() -> (f32[2], f32[2]) {
  %0 = read_variable() {var = 0} : f32[2]
  assign_variable(%0) {var = 1}
  %1 = read_variable() {var = 0} : f32[2]
  return %0, %1
}
variables:
  0 "a" f32[2]
  1 "b" f32[2]
)");
  CHECK(out ==
        "func @f() -> (f32[2], f32[2]) {\n"
        "  %0 = read_variable() {var = 0} : f32[2]\n"
        "  assign_variable(%0) {var = 1}\n"
        "  return %0, %0\n"
        "}\n"
        "variables:\n"
        "  0 \"a\" f32[2]\n"
        "  1 \"b\" f32[2]\n");
}

// ---- DCE -------------------------------------------------------------------------------------

TEST_CASE("dce: unused pure nodes go, side effects stay, constants are compacted") {
  const std::string out = after(jit::dce(), std::string(R"(
func @f(%0: f32[3], %1: bool[]) -> (f32[3]) {
  %2 = constant() {index = 0} : f32[]
  %3 = exp(%0) : f32[3]
  %4 = read_variable() {var = 0} : f32[3]
  %5 = )") + kDraw + R"(
  assign_variable(%0) {var = 0}
  %6 = constant() {index = 1} : f32[]
  %7 = mul(%0, %6) : f32[3]
  %8 = cond(%1, %0, %0) {then_inputs = 1} : f32[3] regions {
    func @draws(%0: f32[3]) -> (f32[3]) {
      %1 = )" + kDraw + R"(
      %2 = exp(%0) : f32[3]
      return %0
    }
    func @pure(%0: f32[3]) -> (f32[3]) {
      return %0
    }
  }
  %9 = cond(%1, %0, %0) {then_inputs = 1} : f32[3] regions {
    func @pure(%0: f32[3]) -> (f32[3]) {
      %1 = exp(%0) : f32[3]
      return %1
    }
    func @pure(%0: f32[3]) -> (f32[3]) {
      return %0
    }
  }
  return %7
}
variables:
  0 "v" f32[3]
constants:
  0 f32[] = 1.0
  1 f32[] = 2.0
)");
  CHECK(out ==
        "func @f(%0: f32[3], %1: bool[]) -> (f32[3]) {\n"
        "  %2 = rng_uniform() {lo = 0.0, hi = 1.0, shape = [3], dtype = f32, seed = 0, "
        "offset = 0, blocks = 1} : f32[3]\n"
        "  assign_variable(%0) {var = 0}\n"
        "  %3 = constant() {index = 0} : f32[]\n"
        "  %4 = mul(%0, %3) : f32[3]\n"
        "  %5 = cond(%1, %0, %0) {then_inputs = 1} : f32[3] regions {\n"
        "    func @draws(%0: f32[3]) -> (f32[3]) {\n"
        "      %1 = rng_uniform() {lo = 0.0, hi = 1.0, shape = [3], dtype = f32, seed = 0, "
        "offset = 0, blocks = 1} : f32[3]\n"
        "      return %0\n"
        "    }\n"
        "    func @pure(%0: f32[3]) -> (f32[3]) {\n"
        "      return %0\n"
        "    }\n"
        "  }\n"
        "  return %4\n"
        "}\n"
        "variables:\n"
        "  0 \"v\" f32[3]\n"
        "constants:\n"
        "  0 f32[] = 2.0\n");
  check_unchanged(jit::dce(), out);
}

// ---- the pipeline ----------------------------------------------------------------------------

TEST_CASE("pipeline: simplifies to a fixed point") {
  // x * (1 + 0) folds to x * 1, which goes; the two exps merge; the dead rest is removed.
  ir::Graph g = ir::parse(R"(
func @f(%0: f32[3]) -> (f32[3]) {
  %1 = constant() {index = 0} : f32[]
  %2 = constant() {index = 1} : f32[]
  %3 = add(%1, %2) : f32[]
  %4 = mul(%0, %3) : f32[3]
  %5 = exp(%4) : f32[3]
  %6 = exp(%0) : f32[3]
  %7 = add(%5, %6) : f32[3]
  return %7
}
constants:
  0 f32[] = 1.0
  1 f32[] = 0.0
)");
  const std::string before = ir::print(g);
  const ir::Graph opt = jit::optimize(g);
  CHECK(ir::print(g) == before);  // the input is left alone
  CHECK(ir::print(opt) ==
        "func @f(%0: f32[3]) -> (f32[3]) {\n"
        "  %1 = exp(%0) : f32[3]\n"
        "  %2 = add(%1, %1) : f32[3]\n"
        "  return %2\n"
        "}\n");
  ir::Graph again = opt;
  CHECK_FALSE(jit::run_to_fixed_point(again, jit::simplify_passes()));
  // full -> constant 1; the broadcast is bypassed (mul broadcasts the scalar itself); x * 1
  // goes.
  CHECK(ir::print(jit::optimize(ir::parse(R"(
func @g(%0: f32[3,4]) -> (f32[3,4]) {
  %1 = full() {shape = [], value = 1.0, dtype = f32} : f32[]
  %2 = broadcast_to(%1) {shape = [3, 4]} : f32[3,4]
  %3 = mul(%2, %0) : f32[3,4]
  return %3
}
)"))) == "func @g(%0: f32[3,4]) -> (f32[3,4]) {\n  return %0\n}\n");
}

TEST_CASE("pipeline: verifies after every pass and names the pass that broke the graph") {
  ir::Graph g = ir::parse(
      "func @f(%0: f32[3]) -> (f32[3]) {\n  %1 = exp(%0) : f32[3]\n"
      "  return %1\n}\n");
  const jit::Pass breaker("breaker", [](ir::Graph& h) {
    h.types[1].dtype = DType::i32;
    return true;
  });
  jit::PipelineOptions opts;
#ifndef NDEBUG
  CHECK(opts.verify_each_pass);  // the default in debug builds
#endif
  opts.verify_each_pass = true;
  check_error([&] { jit::run_to_fixed_point(g, {breaker}, opts); },
              {"after pass 'breaker'", "verify", "exp"});
  // A malformed input is refused before any pass runs.
  check_error([&] { jit::run_to_fixed_point(g, jit::simplify_passes(), opts); },
              {"input graph of 'f'"});
}

TEST_CASE("pipeline: the iteration cap stops a pass that always reports a change") {
  ir::Graph g = ir::parse("func @f(%0: f32[3]) -> (f32[3]) {\n  return %0\n}\n");
  int calls = 0;
  const jit::Pass restless("restless", [&](ir::Graph&) {
    ++calls;
    return true;
  });
  jit::PipelineOptions opts;
  opts.max_iterations = 3;
  CHECK(jit::run_to_fixed_point(g, {restless}, opts));
  CHECK(calls == 3);
}

TEST_CASE("pipeline: KILN_DUMP writes the graph after each pass that changed it") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / fmt::format("kiln_dump_{}", ::getpid());
  fs::remove_all(dir);
  ir::Graph g = ir::parse(R"(
func @"my fn"(%0: f32[3]) -> (f32[3]) {
  %1 = exp(%0) : f32[3]
  %2 = exp(%0) : f32[3]
  %3 = add(%1, %2) : f32[3]
  return %3
}
)");
  ::setenv("KILN_DUMP", dir.c_str(), 1);
  const ir::Graph opt = jit::optimize(g);
  ::unsetenv("KILN_DUMP");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  CHECK(names == std::vector<std::string>{"my_fn.00.input.ir", "my_fn.01.cse.ir"});
  auto read = [&](const std::string& name) {
    std::ifstream in(dir / name);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  CHECK(read("my_fn.00.input.ir") == ir::print(g));
  CHECK(read("my_fn.01.cse.ir") == ir::print(opt));
  fs::remove_all(dir);
}

// ---- property: optimized graphs compute what the traced ones do ------------------------------

namespace {

std::vector<Tensor> variable_values(const ir::Graph& g) {
  std::vector<Tensor> out;
  for (const auto& slot : g.variables)
    out.push_back(Variable(slot.var).value());
  return out;
}

void restore(const ir::Graph& g, const std::vector<Tensor>& values) {
  for (size_t i = 0; i < values.size(); ++i)
    Variable(g.variables[i].var).assign(values[i]);
}

Tensor rnd_tensor(const Shape& s) {
  return kiln::testing::rnd(s, 99);
}

void check_same(const Tensor& got, const Tensor& expected) {
  REQUIRE(got.type() == expected.type());
  if (is_floating(expected.dtype()))
    check_close(got, expected, 1e-6, 1e-12);
  else
    CHECK(got.to_vector<int64_t>() == expected.to_vector<int64_t>());
}

// Optimizes g, checks it verifies and round-trips, and that interpreting it gives the results,
// the variable updates and the random draws of interpreting g.
void check_optimized(const ir::Graph& g, const std::vector<Tensor>& inputs) {
  const ir::Graph opt = jit::optimize(g);
  ir::verify(opt);
  const std::string text = ir::print(opt);
  CHECK(ir::print(ir::parse(text)) == text);
  CHECK(opt.nodes.size() <= g.nodes.size());
  const std::vector<Tensor> vars = variable_values(g);
  random::seed(7);
  const std::vector<Tensor> expected = tracer::interpret(g, inputs);
  const std::vector<Tensor> expected_vars = variable_values(g);
  const uint64_t expected_offset = random::state().offset;
  restore(g, vars);
  random::seed(7);
  const std::vector<Tensor> got = tracer::interpret(opt, inputs);
  CHECK(random::state().offset == expected_offset);
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i)
    check_same(got[i], expected[i]);
  const std::vector<Tensor> got_vars = variable_values(g);
  for (size_t i = 0; i < got_vars.size(); ++i)
    check_same(got_vars[i], expected_vars[i]);
}

}  // namespace

TEST_CASE("property: every corpus function, optimized, matches the traced graph") {
  const auto cases = kiln::testing::corpus();
  REQUIRE(cases.size() >= 40);
  uint32_t seed = 1;
  size_t simplified = 0;
  for (const auto& c : cases) {
    INFO("function " << c.name);
    const Tensor x = kiln::testing::rnd(c.x, seed++), y = kiln::testing::rnd(c.y, seed++);
    auto f = kiln::function(c.fn, {.name = c.name});
    const ConcreteFunction cf = f.get_concrete_function(x, y);
    const ir::Graph& g = cf.graph();
    check_optimized(g, {x, y});
    simplified += jit::optimize(g).nodes.size() < g.nodes.size();
  }
  CHECK(simplified > 0);
}

TEST_CASE("property: variables, draws and regions survive optimization") {
  Variable w(tensor({{0.5f}, {-0.5f}}), "w");
  Variable count(tensor(0.f), "count");
  const Tensor x = tensor({{1.f, 2.f}, {3.f, 4.f}});
  const Tensor y = tensor({{1.f}, {2.f}});
  // A train step: reads, a tape, assigns; the reads before and after the assign differ.
  auto step = kiln::function([&](const Tensor& xb, const Tensor& yb) {
    GradientTape tape;
    Tensor loss = mean(square(matmul(xb, w) - yb));
    Tensor g = tape.gradient(loss, {w})[0];
    Tensor before = w.value() * 1.f;
    w.assign_sub(g * 0.05f);
    count.assign_add(ones({}));
    return std::make_tuple(loss, before + w.value() + w.value());
  });
  const ConcreteFunction step_fn = step.get_concrete_function(x, y);
  check_optimized(step_fn.graph(), {x, y});
  // Draws, used and unused, and constants built by ops inside the trace.
  auto noisy = kiln::function([](const Tensor& a) {
    Tensor unused = random::uniform({5});
    Tensor k = exp(zeros({2, 2})) + 0.f;
    return dropout(a * k, 0.5, true) + random::normal({2, 2}) * 1.f;
  });
  const ConcreteFunction noisy_fn = noisy.get_concrete_function(x);
  check_optimized(noisy_fn.graph(), {x});
  // cond and while regions.
  auto branchy = kiln::function([](const Tensor& a, const Tensor& flag) {
    Tensor scale = a * 3.f;
    Tensor r = kiln::cond(
        flag > 0.f, [&] { return scale * 1.f + exp(a) + exp(a); }, [&] { return exp(a); });
    auto loop = while_loop([](const std::vector<Tensor>& v) { return max(v[0]) < 50.f; },
                           [](const std::vector<Tensor>& v) {
                             return std::vector<Tensor>{v[0] * 2.f * 1.f, v[1] + 1};
                           },
                           {r, tensor(0)});
    return std::make_tuple(loop[0], loop[1]);
  });
  const ConcreteFunction branchy_fn = branchy.get_concrete_function(x, tensor(1.f));
  const ir::Graph& bg = branchy_fn.graph();
  check_optimized(bg, {x, tensor(1.f)});
  check_optimized(bg, {x, tensor(-1.f)});
  // Unknown dims: reshapes with a free -1 and copied dims, draws shaped like a tensor known
  // only at run time.
  auto dynamic = kiln::function(
      [](const Tensor& a) {
        Tensor flat = a.reshape({-1}).reshape({-1, 3}) * 1.f;
        Tensor e = expand_dims(a, 1) + 0.f;
        return std::make_tuple(dropout(flat, 0.5, true) - 0.f, squeeze(e, {1}) * zeros_like(a),
                               sum(e * 2.f, {1}));
      },
      std::vector<TensorSpec>{TensorSpec({-1, 3})});
  const ConcreteFunction dyn_fn = dynamic.get_concrete_function(TensorSpec({-1, 3}));
  check_optimized(dyn_fn.graph(), {rnd_tensor({5, 3})});
  check_optimized(dyn_fn.graph(), {rnd_tensor({1, 3})});
}

namespace {

// A random straight-line program over f32[3,4] values, rich in the identities the passes
// remove (and in the near-identities they must keep), chosen by `seed` at trace time.
std::vector<Tensor> random_program(const Tensor& x, const Tensor& y, uint32_t seed) {
  std::mt19937 gen(seed);
  auto pick = [&](size_t n) { return static_cast<size_t>(gen() % n); };
  std::vector<Tensor> pool{x, y};
  for (int i = 0; i < 14; ++i) {
    const Tensor a = pool[pick(pool.size())], b = pool[pick(pool.size())];
    Tensor r;
    switch (pick(14)) {
      case 0:
        r = a * 1.f;
        break;
      case 1:
        r = a + (-0.f);
        break;
      case 2:
        r = a + 0.f;
        break;
      case 3:
        r = a - 0.f;
        break;
      case 4:
        r = a - (-0.f);
        break;
      case 5:
        r = a / 1.f;
        break;
      case 6:
        r = -(-a);
        break;
      case 7:
        r = a.transpose().transpose() * b;
        break;
      case 8:
        r = a.reshape({-1}).reshape({4, 3}).reshape({3, 4});
        break;
      case 9:
        r = exp(a) + exp(a);
        break;
      case 10:
        r = broadcast_to(tensor(2.f), Shape{3, 4}) * a;
        break;
      case 11:
        r = maximum(a, b) - minimum(b, a);
        break;
      case 12:
        r = a * (ones({}) + zeros({})) + b * 0.f;
        break;
      default:
        r = a * b + b * a;
        break;
    }
    pool.push_back(r);
  }
  return {pool[pool.size() - 1], pool[pool.size() - 2], pool[pool.size() - 3]};
}

// The same bits, except that any NaN matches any NaN (operand order picks a NaN's payload).
void check_bits(const Tensor& got, const Tensor& expected) {
  REQUIRE(got.type() == expected.type());
  const std::vector<float> g = got.to_vector<float>(), e = expected.to_vector<float>();
  for (size_t i = 0; i < g.size(); ++i) {
    INFO("element " << i << ": got " << g[i] << ", expected " << e[i]);
    if (std::isnan(e[i]))
      CHECK(std::isnan(g[i]));
    else
      CHECK(std::bit_cast<uint32_t>(g[i]) == std::bit_cast<uint32_t>(e[i]));
  }
}

}  // namespace

TEST_CASE("property: random programs give bit-identical results, -0.0, inf and NaN included") {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Tensor x = from_vector(
      std::vector<float>{-0.f, 0.f, inf, -inf, nan, 1.5f, -2.25f, 1e-30f, 3.f, -1.f, 0.5f, 7.f},
      Shape{3, 4});
  const Tensor y = from_vector(
      std::vector<float>{0.f, -0.f, -0.f, 2.f, 1.f, -inf, -0.f, 3.f, nan, 0.f, -0.5f, inf},
      Shape{3, 4});
  size_t smaller = 0;
  for (uint32_t seed = 1; seed <= 60; ++seed) {
    INFO("program " << seed);
    auto f = kiln::function(
        [seed](const Tensor& a, const Tensor& b) { return random_program(a, b, seed); },
        {.name = fmt::format("program{}", seed)});
    const ConcreteFunction cf = f.get_concrete_function(x, y);
    const ir::Graph opt = jit::optimize(cf.graph());
    ir::verify(opt);
    smaller += opt.nodes.size() < cf.graph().nodes.size();
    const std::vector<Tensor> expected = tracer::interpret(cf.graph(), {x, y});
    const std::vector<Tensor> got = tracer::interpret(opt, {x, y});
    REQUIRE(got.size() == expected.size());
    for (size_t i = 0; i < got.size(); ++i)
      check_bits(got[i], expected[i]);
  }
  CHECK(smaller > 50);
}
