#pragma once

// Call arenas: one block of CPU memory from which the allocations a compiled function makes
// during one call are carved (the JIT's buffer assignment sizes it from the graph's liveness;
// jit/buffer_assignment.h). While an ArenaScope is active on a thread, the CPU allocator
// serves that thread's requests first-fit from the scope's arena and falls back to its usual
// path when the arena has no room. A freed allocation returns its range to the arena; the
// block goes back to the allocator once the scope has ended and every allocation carved from
// it has been freed, so tensors that outlive the call stay valid.

#include <cstddef>
#include <memory>

namespace kiln::memory {

class Arena;

class ArenaScope {
 public:
  // capacity 0: no arena (allocations take the usual path).
  explicit ArenaScope(size_t capacity);
  ~ArenaScope();
  ArenaScope(const ArenaScope&) = delete;
  ArenaScope& operator=(const ArenaScope&) = delete;

  // Whether p lies in this scope's arena.
  bool owns(const void* p) const;
  // The bytes carved from the arena so far, and the most in use at once.
  size_t bytes_served() const;
  size_t high_water() const;

  // Within a Pause, this thread allocates on the usual path again.
  class Pause {
   public:
    Pause();
    ~Pause();
    Pause(const Pause&) = delete;
    Pause& operator=(const Pause&) = delete;

   private:
    Arena* saved_;
  };

 private:
  std::shared_ptr<Arena> arena_;
  Arena* previous_ = nullptr;
};

}  // namespace kiln::memory
