#pragma once

// The JIT pipeline (DESIGN.md section 2, idea 6): verify, then simplify to a fixed point.
// Fusion, buffer assignment and lowering will follow the simplification in optimize().
//
// Debugging:
//   - Debug builds (!NDEBUG) run ir::verify() after every pass and raise kiln::Error naming
//     the pass when it fails (PipelineOptions::verify_each_pass turns it on in any build).
//   - KILN_DUMP=dir writes the graph's text before the passes and after each pass that
//     changed it: dir/<function name>.<NN>.<pass>.ir, NN counting from 00 (the input,
//     "<name>.00.input.ir"). Each file is written under a temporary name and renamed, so a
//     reader never sees half a file. Characters other than [A-Za-z0-9_.-] in the function
//     name become '_'.

#include <string>
#include <vector>

#include <kiln/jit/pass.h>
#include <kiln/tracer/graph.h>

namespace kiln::jit {

struct PipelineOptions {
#ifdef NDEBUG
  bool verify_each_pass = false;
#else
  bool verify_each_pass = true;
#endif
  // Rounds of the simplification passes before giving up on a fixed point.
  int max_iterations = 16;
  // Where to write the graph after each pass; empty: KILN_DUMP's value (if set).
  std::string dump_dir;
};

// `name` with every character other than [A-Za-z0-9_.-] made '_' (KILN_DUMP file names).
std::string file_safe(const std::string& name);

// The simplification passes in the order the pipeline runs them.
std::vector<Pass> simplify_passes();

// Runs `passes` in order, over and over, until a whole round changes nothing or
// options.max_iterations rounds ran. Verifies g first (kiln::Error on a malformed graph).
// Returns whether g changed.
bool run_to_fixed_point(ir::Graph& g, const std::vector<Pass>& passes,
                        const PipelineOptions& options = {});

// The optimized form of g (g itself is left alone; its regions are copied, not shared): what
// ConcreteFunction::ir(IRStage::optimized) shows and what the JIT compiles. It computes
// the same results as g under the interpreter, with the same variable updates and random
// draws.
ir::Graph optimize(const ir::Graph& g, const PipelineOptions& options = {});

}  // namespace kiln::jit
