// The CUDA runtime side of the backend: device discovery, one stream per device, the caching
// allocator and host/device transfers staged through pinned memory, registered with core
// (core/device_backend.h) at load time.
//
// Caching allocator: requests round up to a size class (512 B steps below 1 MiB, 2 MiB steps
// above); a freed block goes to its class's free list and the next request of that class
// takes it without cudaMalloc. All work on a device runs on its one stream, so a block freed
// by the host while a kernel still reads it is reused only by work ordered after that kernel.
// When cudaMalloc fails, the cache is released (cudaFree) and the request retried once; then
// kiln::Error says how much was asked, live and cached.
//
// CUDA Graph capture (capture_begin/capture_end): while a thread captures on a device, its
// work there is recorded on a stream of its own (stream() answers it on that thread only; the
// replays run on the device's stream), its allocations there come from a pool (its own freed blocks
// first, then the cache, then cudaMalloc with the capture relaxed for the call), and blocks freed
// there go back to the pool, not the cache: the graph writes them on every replay, so no other work
// may be handed one. The pool's blocks return to the cache when the graph is destroyed.

#include "runtime.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

#include <kiln/core/allocator.h>
#include <kiln/core/device_backend.h>
#include <kiln/core/registry.h>

#include "launch_index.h"  // the batched copy

namespace kiln::cuda {

void check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  cudaGetLastError();  // clears a sticky launch error
  KILN_FAIL("cuda: {} failed: {} ({})", what, cudaGetErrorName(e), cudaGetErrorString(e));
}

int device_count() {
  static const int n = [] {
    int c = 0;
    if (cudaGetDeviceCount(&c) != cudaSuccess) {  // no driver, or no device
      cudaGetLastError();
      return 0;
    }
    return c;
  }();
  return n;
}

DeviceGuard::DeviceGuard(int index) {
  check(cudaGetDevice(&old_), "cudaGetDevice");
  if (old_ != index) check(cudaSetDevice(index), "cudaSetDevice");
}

DeviceGuard::~DeviceGuard() {
  int now = -1;
  if (cudaGetDevice(&now) == cudaSuccess && now != old_) cudaSetDevice(old_);
}

namespace {

// The blocks a captured graph owns (see the top of the file). `open` while the graph lives.
struct Pool {
  std::multimap<size_t, void*> free;
  bool open = true;
};

// The calling thread's capture: the device it captures on (-1: none), the stream it records
// on (its own, so that other threads' work on the device's stream is neither recorded nor
// held back), and the pool.
struct Capture {
  int device = -1;
  cudaStream_t stream = nullptr;
  std::shared_ptr<Pool> pool;
};
thread_local Capture tl_capture;

size_t size_class(size_t n) {
  constexpr size_t kSmall = 512, kLarge = size_t{2} << 20, kSplit = size_t{1} << 20;
  n = std::max<size_t>(n, 1);
  return n < kSplit ? (n + kSmall - 1) / kSmall * kSmall : (n + kLarge - 1) / kLarge * kLarge;
}

class CachingAllocator final : public Allocator {
 public:
  explicit CachingAllocator(int device) : device_(device) {}

  void* allocate(size_t nbytes) override {
    const size_t c = size_class(nbytes);
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.allocations;
    void* p = nullptr;
    Pool* pool = tl_capture.device == device_ ? tl_capture.pool.get() : nullptr;
    auto take = [&](std::multimap<size_t, void*>& list) {
      auto it = list.find(c);
      if (it == list.end()) return false;
      p = it->second;
      list.erase(it);
      stats_.cached_bytes -= static_cast<int64_t>(c);
      return true;
    };
    if (!(pool != nullptr && take(pool->free)) && !take(free_)) {
      DeviceGuard g(device_);
      // cudaMalloc is not a stream operation: a capture would refuse it unless relaxed.
      cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
      if (pool) cudaThreadExchangeStreamCaptureMode(&mode);
      cudaError_t e = cudaMalloc(&p, c);
      if (pool) cudaThreadExchangeStreamCaptureMode(&mode);
      if (e == cudaErrorMemoryAllocation) {
        cudaGetLastError();
        release_cached();
        e = cudaMalloc(&p, c);
      }
      if (e != cudaSuccess) {
        cudaGetLastError();
        KILN_FAIL("cuda: out of memory on cuda:{}: allocating {} bytes ({} live, {} cached): {}",
                  device_, c, stats_.live_bytes, stats_.cached_bytes, cudaGetErrorString(e));
      }
    }
    sizes_[p] = Block{c, pool ? tl_capture.pool : nullptr};
    stats_.live_bytes += static_cast<int64_t>(c);
    stats_.peak_bytes = std::max(stats_.peak_bytes, stats_.live_bytes);
    return p;
  }

  void deallocate(void* p, size_t) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sizes_.find(p);
    KILN_ASSERT(it != sizes_.end(), "cuda: freeing a block this allocator does not own");
    const size_t c = it->second.size;
    std::shared_ptr<Pool> pool = std::move(it->second.pool);
    sizes_.erase(it);
    stats_.live_bytes -= static_cast<int64_t>(c);
    stats_.cached_bytes += static_cast<int64_t>(c);
    if (pool && pool->open)
      pool->free.emplace(c, p);
    else
      free_.emplace(c, p);
  }

  // The graph that owned `pool` is gone (or was never made): its free blocks join the cache,
  // and blocks still live join it when freed.
  void close_pool(Pool& pool) {
    std::lock_guard<std::mutex> lock(mu_);
    pool.open = false;
    free_.merge(pool.free);
  }

  MemoryStats stats() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return stats_;
  }
  void reset_peak() override {
    std::lock_guard<std::mutex> lock(mu_);
    stats_.peak_bytes = stats_.live_bytes;
  }
  void empty_cache() override {
    std::lock_guard<std::mutex> lock(mu_);
    release_cached();
  }

 private:
  void release_cached() {  // mu_ held
    DeviceGuard g(device_);
    check(cudaStreamSynchronize(stream(device_)), "cudaStreamSynchronize");
    cudaError_t first = cudaSuccess;
    for (auto& [c, p] : free_) {
      const cudaError_t e = cudaFree(p);
      if (first == cudaSuccess) first = e;
    }
    free_.clear();
    stats_.cached_bytes = 0;
    check(first, "cudaFree (releasing the cache)");
  }

  struct Block {
    size_t size;
    std::shared_ptr<Pool> pool;  // the capture that allocated it, if any
  };

  int device_;
  mutable std::mutex mu_;
  std::multimap<size_t, void*> free_;
  std::unordered_map<void*, Block> sizes_;
  MemoryStats stats_;
};

// Two pinned buffers per device: a host-to-device copy fills one while the other's DMA runs.
struct Staging {
  static constexpr size_t kChunk = size_t{4} << 20;
  std::mutex mu;
  std::array<void*, 2> buf{};
  std::array<cudaEvent_t, 2> done{};
};

struct DeviceState {
  cudaStream_t stream = nullptr;
  std::unique_ptr<CachingAllocator> allocator;
  Staging staging;
};

DeviceState& state(int index) {
  static std::mutex mu;
  // Never destroyed: tensors held by statics are freed after exit-time destructors run.
  static auto* states = new std::map<int, std::unique_ptr<DeviceState>>;
  std::lock_guard<std::mutex> lock(mu);
  auto& s = (*states)[index];
  if (!s) {
    KILN_CHECK(index >= 0 && index < device_count(),
               "cuda: device cuda:{} does not exist ({} found)", index, device_count());
    auto fresh = std::make_unique<DeviceState>();
    DeviceGuard g(index);
    check(cudaStreamCreateWithFlags(&fresh->stream, cudaStreamNonBlocking), "cudaStreamCreate");
    fresh->allocator = std::make_unique<CachingAllocator>(index);
    for (int k = 0; k < 2; ++k) {
      check(cudaMallocHost(&fresh->staging.buf[k], Staging::kChunk), "cudaMallocHost");
      check(cudaEventCreateWithFlags(&fresh->staging.done[k], cudaEventDisableTiming),
            "cudaEventCreate");
    }
    s = std::move(fresh);
  }
  return *s;
}

// A copy between the host and a device cannot be recorded into a graph (the replay would
// read the staging buffer as it is then): inside a capture it is an error, which makes the
// caller run without the graph.
void refuse_in_capture(int index, const char* what) {
  if (tl_capture.device != index) return;
  KILN_FAIL("cuda: a copy {} cuda:{} cannot be recorded into a CUDA Graph", what, index);
}

void copy(void* dst, Device dst_device, const void* src, Device src_device, size_t nbytes) {
  if (src_device.is_cpu() && !dst_device.is_cpu()) refuse_in_capture(dst_device.index, "to");
  if (dst_device.is_cpu() && !src_device.is_cpu()) refuse_in_capture(src_device.index, "from");
  auto* d = static_cast<char*>(dst);
  const auto* s = static_cast<const char*>(src);
  if (src_device.is_cpu()) {  // host -> device, through the pinned buffers
    DeviceState& st = state(dst_device.index);
    DeviceGuard g(dst_device.index);
    std::lock_guard<std::mutex> lock(st.staging.mu);
    int k = 0;
    for (size_t off = 0; off < nbytes; off += Staging::kChunk, k ^= 1) {
      const size_t len = std::min(Staging::kChunk, nbytes - off);
      check(cudaEventSynchronize(st.staging.done[k]), "cudaEventSynchronize");
      std::memcpy(st.staging.buf[k], s + off, len);
      check(cudaMemcpyAsync(d + off, st.staging.buf[k], len, cudaMemcpyHostToDevice, st.stream),
            "cudaMemcpyAsync (host to device)");
      check(cudaEventRecord(st.staging.done[k], st.stream), "cudaEventRecord");
    }
    return;  // the source was copied out: the caller may reuse it at once
  }
  if (dst_device.is_cpu()) {  // device -> host: the host waits for the values
    DeviceState& st = state(src_device.index);
    DeviceGuard g(src_device.index);
    std::lock_guard<std::mutex> lock(st.staging.mu);
    for (size_t off = 0; off < nbytes; off += Staging::kChunk) {
      const size_t len = std::min(Staging::kChunk, nbytes - off);
      check(cudaMemcpyAsync(st.staging.buf[0], s + off, len, cudaMemcpyDeviceToHost, st.stream),
            "cudaMemcpyAsync (device to host)");
      check(cudaStreamSynchronize(st.stream), "cudaStreamSynchronize");
      std::memcpy(d + off, st.staging.buf[0], len);
    }
    return;
  }
  DeviceState& st = state(src_device.index);
  DeviceGuard g(src_device.index);
  if (src_device == dst_device) {
    check(cudaMemcpyAsync(d, s, nbytes, cudaMemcpyDeviceToDevice, stream(src_device.index)),
          "cudaMemcpyAsync (device to device)");
  } else {
    // The destination block may still be read by work queued on its own stream: the copy
    // waits for that, and finishes before returning, so later work there sees the bytes.
    cudaEvent_t ready = nullptr;
    {
      DeviceGuard gd(dst_device.index);
      check(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), "cudaEventCreate");
      check(cudaEventRecord(ready, state(dst_device.index).stream), "cudaEventRecord");
    }
    check(cudaStreamWaitEvent(st.stream, ready, 0), "cudaStreamWaitEvent");
    check(cudaMemcpyPeerAsync(d, dst_device.index, s, src_device.index, nbytes, st.stream),
          "cudaMemcpyPeerAsync");
    cudaEventDestroy(ready);
    check(cudaStreamSynchronize(st.stream), "cudaStreamSynchronize");
  }
}

// ---- CUDA Graphs --------------------------------------------------------------------------

struct CapturedGraph {
  cudaGraphExec_t exec = nullptr;
  std::shared_ptr<Pool> pool;
};

void capture_begin(int index) {
  state(index);  // the device exists, its stream and allocator are made
  KILN_CHECK(tl_capture.device < 0, "cuda: this thread is already capturing a CUDA Graph");
  DeviceGuard g(index);
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate (capture)");
  const cudaError_t e = cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
  if (e != cudaSuccess) {
    cudaStreamDestroy(s);
    check(e, "cudaStreamBeginCapture");
  }
  tl_capture = Capture{index, s, std::make_shared<Pool>()};
}

void* capture_end(int index, std::string& why) {
  DeviceState& st = state(index);
  DeviceGuard g(index);
  std::shared_ptr<Pool> pool = std::move(tl_capture.pool);
  cudaStream_t s = tl_capture.stream;
  tl_capture = Capture{};
  cudaGraph_t graph = nullptr;
  cudaError_t e = cudaStreamEndCapture(s, &graph);
  cudaStreamDestroy(s);
  cudaGraphExec_t exec = nullptr;
  if (e == cudaSuccess) e = cudaGraphInstantiate(&exec, graph, 0);
  if (graph != nullptr) cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    cudaGetLastError();
    why = fmt::format("{} ({})", cudaGetErrorName(e), cudaGetErrorString(e));
    if (pool) st.allocator->close_pool(*pool);
    return nullptr;
  }
  return new CapturedGraph{exec, std::move(pool)};
}

void graph_launch(int index, void* graph) {
  DeviceGuard g(index);
  check(cudaGraphLaunch(static_cast<CapturedGraph*>(graph)->exec, state(index).stream),
        "cudaGraphLaunch");
}

void graph_destroy(int index, void* graph) {
  auto* cg = static_cast<CapturedGraph*>(graph);
  DeviceState& st = state(index);
  DeviceGuard g(index);
  // Errors are ignored: this runs from destructors, at exit too (after the driver is gone).
  cudaStreamSynchronize(st.stream);
  cudaGraphExecDestroy(cg->exec);
  cudaGetLastError();
  st.allocator->close_pool(*cg->pool);
  delete cg;
}

void copy_batch(int index, const void* const* src, void* const* dst, const int64_t* bytes,
                size_t n) {
  DeviceGuard g(index);
  for (size_t at = 0; at < n; at += launch::kCopyBatch) {
    launch::CopyBatch b;
    b.n = static_cast<int>(std::min<size_t>(launch::kCopyBatch, n - at));
    for (int j = 0; j < b.n; ++j) {
      b.src[j] = src[at + static_cast<size_t>(j)];
      b.dst[j] = dst[at + static_cast<size_t>(j)];
      b.bytes[j] = bytes[at + static_cast<size_t>(j)];
    }
    check(launch::copy_batch(b, stream(index)), "a batched device copy");
  }
}

KILN_STATIC_INIT {
  DeviceBackend b;
  b.device_count = &device_count;
  b.allocator = [](int index) -> Allocator& { return *state(index).allocator; };
  b.copy = &copy;
  b.synchronize = [](int index) {
    DeviceGuard g(index);
    check(cudaStreamSynchronize(state(index).stream), "cudaStreamSynchronize");
  };
  b.capture_begin = &capture_begin;
  b.capture_end = &capture_end;
  b.graph_launch = &graph_launch;
  b.graph_destroy = &graph_destroy;
  b.copy_batch = &copy_batch;
  add_module_functions(b);
  register_device_backend(DeviceType::cuda, b);
};

}  // namespace

cudaStream_t stream(int index) {
  if (tl_capture.device == index) return tl_capture.stream;
  return state(index).stream;
}

}  // namespace kiln::cuda
