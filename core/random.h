#pragma once

// Counter-based random numbers (Philox 4x32-10). Element i of a draw depends only on the
// seed, the draw's starting counter and i: the same seed gives the same values whatever the
// thread count (and, later, on CPU and GPU alike).

#include <array>
#include <cstdint>
#include <span>

#include <kiln/core/attrs.h>
#include <kiln/core/tensor.h>

namespace kiln {

class OpDef;

// One Philox 4x32-10 block: four 32-bit outputs for a 128-bit counter and 64-bit key.
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, uint64_t key);

namespace random {
// Reseeds the global generator and resets its counter.
void seed(uint64_t s);
// The global generator's state: the key and the next unused 128-bit block counter.
struct State {
  uint64_t seed = 0;
  uint64_t offset = 0;
};
State state();
void set_state(State s);
// Reserves `blocks` counters and returns the first (for ops that draw).
uint64_t advance(uint64_t blocks);
// The same, returning the seed and the first reserved counter together (atomically). Draw
// primitives carry them as attributes "seed", "offset" and "blocks"; a graph interpreter
// reserves fresh counters with this each time it runs one.
State reserve(uint64_t blocks);
// Fresh counters for one more run of a traced draw node: returns `attrs` with the reserved
// "seed" and "offset". A "blocks" of -1 (a _like draw of a tensor with unknown dims) is
// resolved from the concrete shape of `inputs`; while they still have unknown dims (a
// function inlined into a trace) nothing is reserved and it stays -1.
Attrs redraw(const OpDef& op, std::span<const Tensor> inputs, Attrs attrs);

Tensor uniform(const Shape& shape, double lo = 0, double hi = 1, DType dtype = f32);
Tensor normal(const Shape& shape, double mean = 0, double stddev = 1, DType dtype = f32);
// Integers uniform in [lo, hi).
Tensor randint(const Shape& shape, int64_t lo, int64_t hi, DType dtype = i64);
// Booleans, true with probability p.
Tensor bernoulli(const Shape& shape, double p);

// The same draws shaped like x (and, but for bernoulli, of x's dtype). On a tensor with unknown
// dims (in a trace) the shape is read, and the counters reserved, when the graph runs; the
// values equal those of the sized draw under the same generator state.
Tensor uniform_like(const Tensor& x, double lo = 0, double hi = 1);
Tensor normal_like(const Tensor& x, double mean = 0, double stddev = 1);
Tensor randint_like(const Tensor& x, int64_t lo, int64_t hi);
Tensor bernoulli_like(const Tensor& x, double p);
}  // namespace random

}  // namespace kiln
