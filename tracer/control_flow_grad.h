#pragma once

// Gradients of traced cond and while_loop nodes (internal to tracer/).
//
// A tape recording inside a trace cannot see a region's ops: they belong to another graph.
// So when a traced cond/while node is built, each such tape gets one closure entry whose
// inputs are what the regions read from outside (captured tensors and variables) and whose
// VJP builds the backward pass as control flow of its own: cond differentiates the branch
// that ran, by re-running its region graph under a tape inside a backward cond; while_loop
// runs the reverse loop for the recorded trip count, recomputing each iteration's loop
// variables from the initial ones (O(n^2) body evaluations for n trips, no stored history).

#include <memory>
#include <vector>

#include <kiln/core/tensor.h>
#include <kiln/tracer/graph.h>

namespace kiln::tracer {

// A region graph and the enclosing tensors bound to its captured parameters (in order).
struct Branch {
  std::shared_ptr<ir::Graph> graph;
  std::vector<Tensor> captures;
};

// Whether re-running `g` could differ from the first run or repeat an effect: it (or a region
// in it) draws random numbers or assigns a variable.
bool has_side_effects(const ir::Graph& g);

// Whether a GradientTape records on this thread now, inside the current trace.
bool gradients_recorded_here();

// Records the VJP of cond(pred) -> outputs on the tapes recording here.
void record_cond_gradient(const Tensor& pred, const std::vector<Tensor>& outputs,
                          const Branch& then_branch, const Branch& else_branch);

// Records the VJP of a while loop from `init` to `outputs` after `trips` iterations (an i64
// scalar). `body` is the counting body: params [counter, vars..., captures...], results
// [counter + 1, next vars...].
void record_while_gradient(const std::vector<Tensor>& init, const std::vector<Tensor>& outputs,
                           const Tensor& trips, const Branch& body);

}  // namespace kiln::tracer
