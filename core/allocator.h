#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include <kiln/core/device.h>

namespace kiln {

struct MemoryStats {
  int64_t live_bytes = 0;    // bytes held by live storages
  int64_t peak_bytes = 0;    // the highest live_bytes since start or the last reset_peak()
  int64_t cached_bytes = 0;  // freed blocks kept for reuse (not counted as live)
  int64_t allocations = 0;   // allocate() calls so far
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(size_t nbytes) = 0;
  virtual void deallocate(void* p, size_t nbytes) = 0;
  virtual MemoryStats stats() const = 0;
  virtual void reset_peak() = 0;
  virtual void empty_cache() = 0;
};

// The CPU allocator: 64-byte aligned blocks; blocks of 64 KiB and more are cached after free so
// that a loop of eager ops does not pay page faults on every output.
Allocator& cpu_allocator();

namespace memory {
MemoryStats cpu_stats();
void reset_peak();
void empty_cache();
}  // namespace memory

// A reference-counted block of device memory. Tensors share storages; views add a strided
// window onto one.
class StorageImpl {
 public:
  StorageImpl(size_t nbytes, Device device);
  // Wraps memory Kiln does not own; `keep_alive` is released with the storage.
  StorageImpl(void* data, size_t nbytes, Device device, std::shared_ptr<void> keep_alive);
  ~StorageImpl();
  StorageImpl(const StorageImpl&) = delete;
  StorageImpl& operator=(const StorageImpl&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;
  std::shared_ptr<void> keep_alive_;
};

}  // namespace kiln
