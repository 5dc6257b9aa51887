#pragma once

// Buffer assignment (XLA's is the model): from the fused schedule and each value's last use,
// the size of the one arena a call carves its intermediate buffers from, and which steps must
// allocate outside it because their outputs outlive the call (results, variables' new values).
// The arena is planned by simulating the schedule: each allocating step takes a first-fit
// range for its outputs; a buffer returns when the last value sharing its storage (views
// included) dies. Graphs with unknown dims get no arena.

#include <cstddef>
#include <vector>

#include <kiln/jit/fusion.h>
#include <kiln/tracer/graph.h>

namespace kiln::jit {

struct BufferAssignment {
  size_t arena_bytes = 0;           // 0: no arena
  size_t intermediate_bytes = 0;    // the sum of the planned buffers (reuse saves the rest)
  std::vector<bool> outside_arena;  // per step: allocate on the usual path
};

// An output a kernel writes over one of its inputs, which dies at that step.
struct InPlace {
  int output = -1;  // value ids
  int input = -1;
  // Donation: the input is a read of this variable slot and the output is assigned back to
  // it, so the kernel may update the variable's buffer in place (-1: an ordinary pair).
  int variable = -1;
};

// release_after[k]: the values whose last use is step k. in_place: the pairs the executable
// will try (each output shares its input's buffer when the input's data is unshared).
BufferAssignment assign_buffers(const ir::Graph& g, const FusionPlan& plan,
                                const std::vector<std::vector<int>>& release_after,
                                const std::vector<InPlace>& in_place);

// Ops whose eager kernels may return a view of (or the very tensor of) their first input.
bool may_alias_input(const std::string& op);

}  // namespace kiln::jit
