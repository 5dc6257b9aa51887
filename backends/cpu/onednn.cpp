#include <kiln/backends/cpu/onednn.h>

#include <mutex>
#include <unordered_map>

namespace kiln::cpu {
namespace {

struct Cache {
  std::mutex mu;
  std::unordered_map<std::string, std::shared_ptr<const OneDnnEntry>> entries;
};

Cache& cache() {
  static Cache* c = new Cache;  // leaked: primitives may outlive static destruction order
  return *c;
}

}  // namespace

dnnl::engine& onednn_engine() {
  static dnnl::engine* e = new dnnl::engine(dnnl::engine::kind::cpu, 0);
  return *e;
}

dnnl::stream& onednn_stream() {
  thread_local dnnl::stream s(onednn_engine());
  return s;
}

std::shared_ptr<const OneDnnEntry> onednn_cached(const std::string& key,
                                                 const std::function<OneDnnEntry()>& make) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.entries.find(key);
    if (it != c.entries.end()) return it->second;
  }
  // Built outside the lock: primitive creation can take milliseconds. Two threads racing on
  // one key both build it; the first insert wins.
  auto entry = std::make_shared<OneDnnEntry>();
  try {
    *entry = make();
  } catch (const dnnl::error&) {
    entry->prims.clear();
    entry->descs.clear();
    entry->ok = false;
  }
  std::lock_guard<std::mutex> lock(c.mu);
  auto [it, inserted] = c.entries.emplace(key, std::move(entry));
  return it->second;
}

size_t onednn_cache_size() {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  return c.entries.size();
}

std::string dims_key(const dnnl::memory::dims& d) {
  std::string s;
  for (size_t i = 0; i < d.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(d[i]);
  }
  return s;
}

}  // namespace kiln::cpu
