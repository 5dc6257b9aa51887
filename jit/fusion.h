#pragma once

// Fusion: partitions a graph's nodes into kernels (DESIGN.md section 2, idea 6; XLA's
// instruction fusion is the model). A fusion group is a connected set of elementwise nodes
// with one output shape, the group's iteration space; the values it reads from outside may
// broadcast into that space. A node joins the group of one of its producers unless that
// would make a cycle (another input of the node depends on the group). The schedule then
// orders groups and the remaining nodes topologically, keeping side effects (variable reads
// and assigns, random draws, control flow) in program order.

#include <algorithm>
#include <functional>
#include <vector>

#include <kiln/tracer/graph.h>

namespace kiln::jit {

struct FusionGroup {
  std::vector<int> nodes;    // indices into Graph::nodes, in program order
  std::vector<int> inputs;   // values read from outside the group, in first-use order
  std::vector<int> outputs;  // values the group writes: used outside it, or results
  Shape shape;               // the iteration space: every member's output shape, or the rows
  // A row program: reductions over the last axis of `shape` with their elementwise producers
  // and consumers (softmax, layer norm). Members are full ([R..., C]) or per row ([R..., 1]
  // or [R...]); per row, the kernel runs one loop per reduction and one for the outputs.
  bool row_program = false;
  // A column program: reductions over every axis but the last of `shape` (bias gradients)
  // with their full elementwise producers; the kernel walks the rows and keeps one
  // accumulator per column, vectorized across the columns.
  bool column_program = false;
  // Movement nodes (transpose, slice, broadcast_to, reshape) folded into the kernel's
  // indexing: each makes a view of a value from outside (no copy) just before the kernel
  // runs, and the kernel reads that view through its strides. Their outputs are among
  // `inputs`; their own inputs are read by the group too.
  std::vector<int> prologue;
  // Column programs: members P = matmul(transpose(H), D) that sum over the rows (a weight
  // gradient, contraction_folding.cpp): H a value the program has at each element, D [rows,
  // K] read by row, P [columns, K] accumulated per column like a column sum.
  std::vector<int> row_contractions;
  bool has_row_contraction(int node) const {
    return std::find(row_contractions.begin(), row_contractions.end(), node) !=
           row_contractions.end();
  }
};

// What the code generator can do with a node.
// row_view: a reshape that adds or drops a trailing size-1 dim ([R..., 1] <-> [R...]), the
// same value per row either way; it joins a row program whose rows it is per-row for (the
// keepdims reshapes of a loss), and otherwise runs as a view.
enum class Fusible { no, elementwise, row_reduction, column_reduction, row_view };

// One step of the schedule: a fusion group, or a node run by itself.
struct Step {
  int group = -1;
  int node = -1;
};

struct FusionPlan {
  std::vector<FusionGroup> groups;
  std::vector<Step> steps;
};

// `classify` says what the kernel emitter supports for a node.
FusionPlan plan_fusion(const ir::Graph& g,
                       const std::function<Fusible(const ir::Graph&, const ir::Node&)>& classify);

// Folds movement nodes into the elementwise groups that alone consume them (as prologues),
// removing their steps. Row and column programs keep theirs.
void absorb_views(const ir::Graph& g, FusionPlan& plan);
bool is_view_op(const std::string& op);

// Matrix products whose contraction is at most this long can run inside a column program.
inline constexpr int64_t kMaxFusedContraction = 16;
// Moves a 2-D matmul with a short contraction (K <= kMaxFusedContraction, static shapes)
// into the column program that alone consumes it, removing its library call: the kernel
// computes each element as K multiply-adds where its consumers read it. A backward pass
// makes this pattern wherever a layer with few outputs follows a hidden layer: dh = dy W^T
// (K = the outputs), then the activation's gradient and the bias gradient's column sum.
void absorb_contractions(const ir::Graph& g, FusionPlan& plan);
// Moves a 2-D matmul P = transpose(H) x D into a column program that reads H at each element:
// D [rows, K] with K <= kMaxFusedContraction, P [columns, K], every reader of P after the
// program. The program walks every row of H anyway; P costs K multiply-adds per element more,
// kept per column. A backward pass makes this pattern beside the previous one: the weight
// gradient dW = h^T dy of a layer with few outputs, next to dh = dy W^T.
void absorb_row_contractions(const ir::Graph& g, FusionPlan& plan);
// Products with an epilogue (product_epilogue.cpp): a 2-D f32 matmul of at least
// kMinEpilogueProductMacs multiply-adds (static shapes) whose output only one group reads,
// where `flat(group)` says that group is an elementwise kernel over the product's shape that
// indexes every input by the flat element. Its step moves down to just before that group's,
// and the executable runs the two together, each thread a block of the product's rows and
// then the kernel over those rows. Returns, per step, whether it is such a product (its
// epilogue is the next step).
inline constexpr int64_t kMinEpilogueProductMacs = int64_t{1} << 20;
std::vector<bool> pair_product_epilogues(const ir::Graph& g, FusionPlan& plan,
                                         const std::function<bool(int group)>& flat);
// The threads such a pair runs on for a [rows, cols] product contracting over `depth`: blocks
// of rows large enough that each thread's product stays efficient.
int epilogue_threads(int64_t rows, int64_t cols, int64_t depth);
// Every value a step reads from before it runs: a group's inputs and its prologue's inputs,
// or a node's inputs.
std::vector<int> step_reads(const ir::Graph& g, const FusionPlan& plan, const Step& s);
// Per value, the one step that reads it: -1 for none, -2 for more than one or a result.
std::vector<int> sole_readers(const ir::Graph& g, const FusionPlan& plan);
// The scan the plan-level folds share (views, short contractions, product epilogues): for
// each step k that runs a node with one output v, read by the step r of a group alone, calls
// fold(k, r, v). A fold that changed the plan returns true and the scan starts over on the
// new plan, until a pass over every step changes nothing.
void fold_into_sole_readers(const ir::Graph& g, FusionPlan& plan,
                            const std::function<bool(size_t k, size_t r, int v)>& fold);

// Row programs: whether t is a per-row shape of the row space [R..., C] (with or without the
// kept 1: what a member reduction makes), a per-column one ([C] or [1..., C]), and whether an
// outside value of shape t can be read there as broadcasting reads it: full, per row
// ([R..., 1]), per column, or one element.
bool is_row_value(const Shape& t, const Shape& rows);
bool is_column_value(const Shape& t, const Shape& rows);
bool row_readable(const Shape& t, const Shape& rows);

}  // namespace kiln::jit
