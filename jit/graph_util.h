#pragma once

// Helpers the passes share: what a node may not lose or duplicate (side effects, state), value
// substitution, and compact(), which restores the canonical numbering every pass leaves.

#include <cstdint>
#include <vector>

#include <kiln/tracer/graph.h>

namespace kiln::jit {

// A Philox draw (a registry op flagged kStateful: rng_uniform, rng_normal, ...). Each draw
// reserves the next counters, so removing or merging one changes what the later draws get.
bool is_random_draw(const ir::Node& n);

// Work that must happen even when no output is used: assign_variable, random draws, and
// cond/while nodes with any of them inside a region.
bool has_side_effects(const ir::Node& n);

// Whether the outputs depend on more than the inputs and attributes: side effects as above,
// read_variable, and region nodes with a read inside. Such nodes are never folded or merged.
bool is_stateful(const ir::Node& n);

// The variables (indices into the outermost graph's variables) assigned by n, inside its
// regions included.
std::vector<int64_t> assigned_variables(const ir::Node& n);

// For each value id: the index of the node that defines it, or -1 (a parameter or undefined).
std::vector<int> definers(const ir::Graph& g);

// Rewrites every use of a value v (node inputs and results) to subst[v], following chains
// (subst[v] == v means "keep"). Returns whether anything changed.
bool substitute(ir::Graph& g, const std::vector<int>& subst);

// An identity substitution for g's values.
std::vector<int> identity_substitution(const ir::Graph& g);

// Renumbers values in definition order (params first, then node outputs), drops the types of
// values nothing defines and the constants no constant node refers to. Regions are separate
// graphs and are left alone.
void compact(ir::Graph& g);

// A copy of g whose regions are copies too (Graph's copy shares them).
ir::Graph deep_copy(const ir::Graph& g);

// Whether every dim is known (no -1).
bool fully_known(const TensorType& t);

// Whether n is a product of two matrices, [M, K] x [K, N] -> [M, N], every dim known (the
// plan-level folds of contraction_folding.cpp and product_epilogue.cpp start from these).
bool is_static_matrix_product(const ir::Graph& g, const ir::Node& n);

// Attribute lists that are identical, with doubles compared by bit pattern (0.0 and -0.0
// differ; Attrs::operator== would say they are equal).
bool identical(const Attrs& a, const Attrs& b);

// Constants of the same type and bit-identical elements.
bool identical(const Tensor& a, const Tensor& b);

}  // namespace kiln::jit
