#pragma once

// First-fit placement of byte ranges, shared by the call arena (core/allocator.cpp) and the
// JIT's buffer assignment, which simulates that arena to size it. Free ranges coalesce;
// ranges are handed out below a top that grows up to `limit` and falls back when its last
// range returns.

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <limits>
#include <map>
#include <optional>

namespace kiln::memory {

class FirstFit {
 public:
  explicit FirstFit(size_t limit = std::numeric_limits<size_t>::max()) : limit_(limit) {}

  // The lowest free offset of `size` bytes, or nothing when the limit leaves no room.
  std::optional<size_t> take(size_t size) {
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < size) continue;
      const size_t off = it->first, left = it->second - size;
      free_.erase(it);
      if (left) free_[off + size] = left;
      return off;
    }
    if (size > limit_ - top_) return std::nullopt;
    const size_t off = top_;
    top_ += size;
    peak_ = std::max(peak_, top_);
    return off;
  }

  void give(size_t off, size_t size) {
    auto next = free_.lower_bound(off);
    if (next != free_.end() && next->first == off + size) {
      size += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == off) {
        off = prev->first;
        size += prev->second;
        free_.erase(prev);
      }
    }
    if (off + size == top_) {  // the top falls back (coalescing left no free range below it)
      top_ = off;
      return;
    }
    free_[off] = size;
  }

  size_t peak() const { return peak_; }  // the highest end handed out

 private:
  std::map<size_t, size_t> free_;  // offset -> size, below top_, coalesced
  size_t top_ = 0, peak_ = 0, limit_;
};

}  // namespace kiln::memory
