#include <kiln/core/allocator.h>

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>

#include <kiln/core/arena.h>
#include <kiln/core/device_backend.h>
#include <kiln/core/error.h>
#include <kiln/core/first_fit.h>

namespace kiln {
namespace memory {

// First-fit over one block, 64-byte granules. Only the thread whose scope installed it
// allocates from it; any thread may free into it.
class Arena {
 public:
  explicit Arena(size_t capacity);
  void* allocate(size_t nbytes);
  // Returns true when the arena is now closed and empty (the caller releases it).
  bool deallocate(void* p);
  bool close();  // the scope ended; true when empty
  bool owns(const void* p) const {
    const auto* c = static_cast<const char*>(p);
    return c >= base_ && c < base_ + capacity_;
  }
  char* base() const { return base_; }
  size_t capacity() const { return capacity_; }
  size_t served() const {
    std::lock_guard<std::mutex> lock(mu_);
    return served_;
  }
  size_t high_water() const {
    std::lock_guard<std::mutex> lock(mu_);
    return high_;
  }

 private:
  mutable std::mutex mu_;
  char* base_ = nullptr;
  size_t capacity_ = 0;
  FirstFit ranges_;
  std::map<size_t, size_t> used_;  // offset -> size
  size_t in_use_ = 0, high_ = 0, served_ = 0;
  bool closed_ = false;
};

namespace {
thread_local Arena* current_arena = nullptr;
std::mutex registry_mu;
std::map<const char*, std::shared_ptr<Arena>> registry;  // live arenas by base address
std::atomic<int> live_arenas{0};

void release(const std::shared_ptr<Arena>& a) {
  {
    std::lock_guard<std::mutex> lock(registry_mu);
    registry.erase(a->base());
    live_arenas.fetch_sub(1, std::memory_order_relaxed);
  }
  cpu_allocator().deallocate(a->base(), a->capacity());
}
}  // namespace

Arena::Arena(size_t capacity) : capacity_((capacity + 63) / 64 * 64), ranges_(capacity_) {
  Arena* saved = current_arena;
  current_arena = nullptr;  // the block itself comes from the usual path
  base_ = static_cast<char*>(cpu_allocator().allocate(capacity_));
  current_arena = saved;
}

void* Arena::allocate(size_t nbytes) {
  const size_t size = (std::max<size_t>(nbytes, 1) + 63) / 64 * 64;
  std::lock_guard<std::mutex> lock(mu_);
  const std::optional<size_t> offset = ranges_.take(size);
  if (!offset) return nullptr;
  used_[*offset] = size;
  in_use_ += size;
  served_ += size;
  high_ = std::max(high_, in_use_);
  return base_ + *offset;
}

bool Arena::deallocate(void* p) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = used_.find(static_cast<size_t>(static_cast<char*>(p) - base_));
  KILN_CHECK(it != used_.end(), "allocator: freeing an address the arena did not hand out");
  ranges_.give(it->first, it->second);
  in_use_ -= it->second;
  used_.erase(it);
  return closed_ && used_.empty();
}

bool Arena::close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  return used_.empty();
}

ArenaScope::ArenaScope(size_t capacity) : previous_(current_arena) {
  if (capacity == 0) return;
  arena_ = std::make_shared<Arena>(capacity);
  {
    std::lock_guard<std::mutex> lock(registry_mu);
    registry[arena_->base()] = arena_;
    live_arenas.fetch_add(1, std::memory_order_relaxed);
  }
  current_arena = arena_.get();
}

ArenaScope::~ArenaScope() {
  current_arena = previous_;
  if (arena_ && arena_->close()) release(arena_);
}

bool ArenaScope::owns(const void* p) const {
  return arena_ && arena_->owns(p);
}
size_t ArenaScope::bytes_served() const {
  return arena_ ? arena_->served() : 0;
}
size_t ArenaScope::high_water() const {
  return arena_ ? arena_->high_water() : 0;
}

ArenaScope::Pause::Pause() : saved_(current_arena) {
  current_arena = nullptr;
}
ArenaScope::Pause::~Pause() {
  current_arena = saved_;
}

// The arena holding p, if any (only looked up while some arena is alive).
std::shared_ptr<Arena> arena_of(const void* p) {
  if (live_arenas.load(std::memory_order_relaxed) == 0) return nullptr;
  std::lock_guard<std::mutex> lock(registry_mu);
  auto it = registry.upper_bound(static_cast<const char*>(p));
  if (it == registry.begin()) return nullptr;
  --it;
  return it->second->owns(p) ? it->second : nullptr;
}

}  // namespace memory

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
    if (memory::Arena* a = memory::current_arena)
      if (void* p = a->allocate(nbytes)) return p;
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
    if (std::shared_ptr<memory::Arena> a = memory::arena_of(p)) {
      if (a->deallocate(p)) memory::release(a);
      return;
    }
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

namespace {
const DeviceBackend* backends[kNumDeviceTypes] = {};
}  // namespace

void register_device_backend(DeviceType type, const DeviceBackend& backend) {
  backends[static_cast<int>(type)] = new DeviceBackend(backend);  // lives with the process
}

const DeviceBackend* device_backend(DeviceType type) {
  return backends[static_cast<int>(type)];
}

const DeviceBackend& checked_backend(Device device, const char* what) {
  const DeviceBackend* b = device_backend(device.type);
  KILN_CHECK(b != nullptr,
             "{}: device {} is not available: this build has no backend for it (build with "
             "-DKILN_CUDA=ON and the CUDA toolkit)",
             what, device.str());
  const int n = b->device_count();
  KILN_CHECK(device.index >= 0 && device.index < n, "{}: device {} is not available: {} found",
             what, device.str(),
             n == 0 ? std::string("no device of that type was")
                    : fmt::format("{} device{} of that type {}", n, n == 1 ? "" : "s",
                                  n == 1 ? "was" : "were"));
  return *b;
}

int device_count(DeviceType type) {
  if (type == DeviceType::cpu) return 1;
  const DeviceBackend* b = device_backend(type);
  return b ? b->device_count() : 0;
}

void synchronize(Device device) {
  if (device.is_cpu()) return;
  checked_backend(device, "synchronize").synchronize(device.index);
}

namespace {
std::atomic<bool> tf32{false};
}  // namespace

void set_allow_tf32(bool allow) {
  tf32 = allow;
}
bool allow_tf32() {
  return tf32;
}

namespace memory {
MemoryStats device_stats(Device device) {
  if (device.is_cpu()) return cpu_stats();
  return checked_backend(device, "device_stats").allocator(device.index).stats();
}
void empty_cache(Device device) {
  if (device.is_cpu()) return empty_cache();
  checked_backend(device, "empty_cache").allocator(device.index).empty_cache();
}
}  // namespace memory

StorageImpl::StorageImpl(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  allocator_ = device.is_cpu() ? &cpu_allocator()
                               : &checked_backend(device, "allocate").allocator(device.index);
  data_ = allocator_->allocate(nbytes);
}

StorageImpl::StorageImpl(void* data, size_t nbytes, Device device, std::shared_ptr<void> keep_alive)
    : data_(data), nbytes_(nbytes), device_(device), keep_alive_(std::move(keep_alive)) {}

StorageImpl::~StorageImpl() {
  if (allocator_) allocator_->deallocate(data_, nbytes_);
}

}  // namespace kiln
