#pragma once

// A thin layer over oneDNN: one engine for the process, one stream per thread, and a cache
// of created primitives keyed by a string that spells out everything the primitive was
// built for (kind, dims, strides, dtype, attributes). Creating a oneDNN primitive costs far
// more than running a small one, so eager ops must never build the same one twice.

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <oneapi/dnnl/dnnl.hpp>

namespace kiln::cpu {

// The process-wide CPU engine.
dnnl::engine& onednn_engine();
// This thread's stream on onednn_engine().
dnnl::stream& onednn_stream();

// What a cache entry holds: the primitives of one op instance (e.g. a weight reorder followed
// by a convolution) and the memory descriptors they expect.
struct OneDnnEntry {
  std::vector<dnnl::primitive> prims;
  std::vector<dnnl::memory::desc> descs;
  bool ok = true;  // false: oneDNN refused this configuration; callers use their own kernel
};

// The entry for `key`, created by `make` on first use. `make` may throw dnnl::error, which
// is remembered as a refused configuration (ok == false) so it is not retried.
std::shared_ptr<const OneDnnEntry> onednn_cached(const std::string& key,
                                                 const std::function<OneDnnEntry()>& make);

// Number of cached entries (tests check that repeated calls reuse primitives).
size_t onednn_cache_size();

// "a,b,c" for building cache keys.
std::string dims_key(const dnnl::memory::dims& d);

}  // namespace kiln::cpu
