#pragma once

// jit/: the compiler behind kiln::function (DESIGN.md section 2, idea 6). Today it holds the
// simplification passes over the Graph IR and the pipeline that runs them (pipeline.h); fusion,
// buffer assignment and lowering to LLVM follow. LLVM headers never leave this folder.
//
// A pass rewrites one ir::Graph in place and returns whether it changed it, so the pipeline
// can run a group of passes to a fixed point and a test can assert that a pass leaves a graph
// alone. Every pass:
//   - assumes a graph that ir::verify() accepts, and leaves one that it still accepts;
//   - keeps the graph's interface: params, the number and the types of results, variables;
//   - leaves the values numbered in definition order (0, 1, 2...) with no gaps, so the
//     printed text parses back (compact() in graph_util.h);
//   - visits the regions of cond and while nodes too (Pass::run), innermost first, and treats
//     a region node itself as opaque: it is never folded, merged or moved, and it is kept
//     when a region inside it has side effects.

#include <functional>
#include <string>
#include <vector>

#include <kiln/tracer/graph.h>

namespace kiln::jit {

class Pass {
 public:
  // `run_one` rewrites one graph level; regions are handled by run().
  Pass(std::string name, std::function<bool(ir::Graph&)> run_one)
      : name_(std::move(name)), run_one_(std::move(run_one)) {}

  const std::string& name() const { return name_; }
  // Runs the pass over every region nested in g (innermost first), then over g itself.
  // Regions shared with another graph are copied before they are changed.
  bool run(ir::Graph& g) const;

 private:
  std::string name_;
  std::function<bool(ir::Graph&)> run_one_;
};

// The simplification passes, one per file in jit/passes/ (each file's header comment says
// what the pass assumes, does and leaves alone).
Pass constant_folding();    // constant inputs -> evaluated with the eager kernels
Pass algebraic_simplify();  // identities that are exact in floating point
Pass cse();                 // common subexpressions -> one node
Pass dce();                 // nodes whose outputs nobody uses and that have no side effects

// Lowering passes, run once after simplification on what the JIT compiles.
Pass matmul_epilogue();  // relu(matmul(a, b) + bias) -> matmul_bias_act (oneDNN post-ops)
Pass conv_epilogue();    // relu(conv2d(x, w) + bias) -> conv2d_bias_act (oneDNN post-ops)
Pass expand_adam();      // adam_update -> its elementwise ops (one fused, in-place kernel)

}  // namespace kiln::jit
