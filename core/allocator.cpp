#include <kiln/core/allocator.h>

#include <sys/mman.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>

#include <kiln/core/error.h>

namespace kiln {
namespace {

constexpr size_t kAlignment = 64;
constexpr size_t kLargeBlock = size_t{64} << 10;  // blocks this big or bigger are cached
constexpr size_t kPage = 4096;

size_t cache_limit() {
  static const size_t limit = [] {
    if (const char* s = std::getenv("KILN_CPU_CACHE_BYTES"))
      return static_cast<size_t>(std::strtoull(s, nullptr, 10));
    return size_t{2} << 30;
  }();
  return limit;
}

// Aligned host memory with live/peak accounting. Freed large blocks are kept in a
// size-keyed cache (up to KILN_CPU_CACHE_BYTES, 2 GiB by default): eager loops allocate the
// same sizes over and over, and fresh pages cost a fault each on first touch.
class CpuAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    const size_t size = rounded(nbytes);
    allocations_.fetch_add(1, std::memory_order_relaxed);
    void* p = nullptr;
    if (size >= kLargeBlock) p = take_cached(size);
    if (!p) {
      p = std::aligned_alloc(kAlignment, size);
      if (!p) {
        empty_cache();
        p = std::aligned_alloc(kAlignment, size);
      }
      KILN_CHECK(p != nullptr, "allocate: out of memory allocating {} bytes", nbytes);
#ifdef MADV_HUGEPAGE
      if (size >= (size_t{4} << 20)) madvise(p, size, MADV_HUGEPAGE);
#endif
    }
    const int64_t live = live_.fetch_add(size, std::memory_order_relaxed) + size;
    int64_t peak = peak_.load(std::memory_order_relaxed);
    while (live > peak && !peak_.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {
    }
    return p;
  }

  void deallocate(void* p, size_t nbytes) override {
    if (!p) return;
    const size_t size = rounded(nbytes);
    live_.fetch_sub(size, std::memory_order_relaxed);
    if (size >= kLargeBlock) {
      std::lock_guard<std::mutex> lock(mu_);
      if (cached_ + size <= cache_limit()) {
        cache_.emplace(size, p);
        cached_ += size;
        return;
      }
    }
    std::free(p);
  }

  MemoryStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return {live_.load(), peak_.load(), static_cast<int64_t>(cached_), allocations_.load()};
  }
  void reset_peak() override {
    peak_.store(live_.load());
  }
  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [size, p] : cache_)
      std::free(p);
    cache_.clear();
    cached_ = 0;
  }

 private:
  static size_t rounded(size_t n) {
    if (n == 0) n = 1;
    const size_t unit = n >= kLargeBlock ? kPage : kAlignment;
    return (n + unit - 1) / unit * unit;
  }
  void* take_cached(size_t size) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(size);
    if (it == cache_.end()) return nullptr;
    void* p = it->second;
    cache_.erase(it);
    cached_ -= size;
    return p;
  }

  mutable std::mutex mu_;
  std::multimap<size_t, void*> cache_;
  size_t cached_ = 0;
  std::atomic<int64_t> live_{0}, peak_{0}, allocations_{0};
};

}  // namespace

Allocator& cpu_allocator() {
  static CpuAllocator* a = new CpuAllocator();  // never destroyed: storages may outlive main
  return *a;
}

namespace memory {
MemoryStats cpu_stats() {
  return cpu_allocator().stats();
}
void reset_peak() {
  cpu_allocator().reset_peak();
}
void empty_cache() {
  cpu_allocator().empty_cache();
}
}  // namespace memory

StorageImpl::StorageImpl(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  KILN_CHECK(device.is_cpu(), "allocate: device {} is not available in this build", device.str());
  allocator_ = &cpu_allocator();
  data_ = allocator_->allocate(nbytes);
}

StorageImpl::StorageImpl(void* data, size_t nbytes, Device device, std::shared_ptr<void> keep_alive)
    : data_(data), nbytes_(nbytes), device_(device), keep_alive_(std::move(keep_alive)) {}

StorageImpl::~StorageImpl() {
  if (allocator_) allocator_->deallocate(data_, nbytes_);
}

}  // namespace kiln
