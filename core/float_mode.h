#pragma once
// Subnormal floats on the CPU. By default Kiln runs its CPU kernels with subnormal results
// flushed to zero and subnormal inputs read as zero (x86's FTZ and DAZ modes), as TensorFlow
// runs its threads: an update that decays a value by a constant factor each step (Adam's
// moments of a gradient that has become 0) otherwise spends hundreds of steps in the
// subnormal range, where every multiply and add is many times slower. The values lost are
// below 1.2e-38 in f32 and 2.2e-308 in f64. set_flush_denormal(false) keeps IEEE gradual
// underflow, as PyTorch does by default.
//
// The mode is a per-thread register. Kiln sets it (and restores the caller's afterwards)
// around each CPU kernel it dispatches, around each call of a compiled function, and on
// every thread of the parallel regions it opens. oneDNN's own parallel regions (a large
// matmul or convolution called outside Kiln's) run on the pool's threads as they are. CUDA
// kernels keep subnormals either way. Elsewhere than x86 the setting has no effect yet.
#include <cstdint>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace kiln {

// Whether Kiln's CPU kernels flush subnormals to zero; true unless set otherwise.
void set_flush_denormal(bool on);
bool flush_denormal();

// While alive: this thread's floating-point mode is the one flush_denormal() asks for; the
// previous mode comes back at the end. Costs a register read where the mode is already
// right (nested scopes), and two writes where it is not.
class FloatModeScope {
 public:
#if defined(__x86_64__) || defined(__i386__)
  FloatModeScope() : saved_(_mm_getcsr()) {
    const uint32_t want = flush_denormal() ? (saved_ | kFlush) : (saved_ & ~kFlush);
    changed_ = want != saved_;
    if (changed_) _mm_setcsr(want);
  }
  ~FloatModeScope() {  // the mode as it was; the exception flags raised meanwhile stay
    if (changed_) _mm_setcsr((_mm_getcsr() & kFlags) | (saved_ & ~kFlags));
  }
#else
  FloatModeScope() = default;
#endif
  FloatModeScope(const FloatModeScope&) = delete;
  FloatModeScope& operator=(const FloatModeScope&) = delete;

 private:
#if defined(__x86_64__) || defined(__i386__)
  static constexpr uint32_t kFlush = 0x8040;  // MXCSR's FTZ (bit 15) and DAZ (bit 6)
  static constexpr uint32_t kFlags = 0x3f;    // its sticky exception flags
  uint32_t saved_;
  bool changed_;
#endif
};

}  // namespace kiln
