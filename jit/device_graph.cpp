// CUDA Graphs for compiled functions (ARCHITECTURE.md, "CUDA Graphs"). The second call of an
// Executable on a device records its steps into a graph; that call and the later ones replay
// it: one batched copy of the inputs and of the variables the steps read into the graph's own
// buffers, one graph launch, one batched copy of the results and of the variables' new values
// out into fresh tensors. The graph is a pure function of its own buffers, so nothing the
// caller holds is ever written, and a replay costs three launches however many steps it has.
//
// Not captured (the calls run step by step; KILN_LOG=info says why): graphs with unknown dims,
// random draws (a replay would repeat their counters), control flow (its predicate is read on
// the host), graphs whose copies would cost more than the launches they save (over a MiB per
// step), inputs or variables not on the device, and steps that read device values on the host
// (the data checks of gather, scatter_add and integer division): a capture that meets one
// fails, is discarded, and the device is marked off for this Executable. KILN_CUDA_GRAPHS=0
// turns capture off.

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <kiln/core/device_backend.h>
#include <kiln/core/registry.h>
#include <kiln/jit/executable.h>

namespace kiln::jit {
namespace {

std::atomic<int64_t> replays{0};
constexpr int64_t kGraphCopyBytesPerStep = int64_t{1} << 20;

bool graphs_enabled() {
  static const bool on = [] {
    const char* s = std::getenv("KILN_CUDA_GRAPHS");
    return s == nullptr || std::strcmp(s, "0") != 0;
  }();
  return on;
}

bool log_info() {
  static const bool on = [] {
    const char* s = std::getenv("KILN_LOG");
    return s != nullptr && (std::strcmp(s, "info") == 0 || std::strcmp(s, "debug") == 0);
  }();
  return on;
}

// Dense copies src[j] -> dst[j], in one batch on the device's stream.
void copy_all(const DeviceBackend& b, Device device, const std::vector<Tensor>& src,
              const std::vector<Tensor>& dst) {
  std::vector<const void*> s;
  std::vector<void*> d;
  std::vector<int64_t> bytes;
  for (size_t j = 0; j < src.size(); ++j) {
    if (src[j].raw_data() == dst[j].raw_data()) continue;
    s.push_back(src[j].raw_data());
    d.push_back(dst[j].mutable_data<char>());
    bytes.push_back(dst[j].numel() * static_cast<int64_t>(size_of(dst[j].dtype())));
  }
  if (!s.empty()) b.copy_batch(device.index, s.data(), d.data(), bytes.data(), s.size());
}

}  // namespace

// The captured graph and the buffers it reads and writes. Destroyed with the Executable
// (after the device has finished its replays).
struct Executable::DeviceGraph {
  Device device;
  void* handle = nullptr;
  std::mutex mu;                // one replay at a time: they share the buffers
  std::vector<Tensor> in;       // per graph parameter
  std::vector<Tensor> var_in;   // per variable slot: the value the steps read
  std::vector<Tensor> results;  // the steps' results, in the graph's buffers
  std::vector<Tensor> var_out;  // per slot: the value assigned (undefined: not assigned)

  explicit DeviceGraph(Device d) : device(d) {}
  ~DeviceGraph() {
    if (handle == nullptr) return;
    const DeviceBackend* b = device_backend(device.type);
    b->graph_destroy(device.index, handle);  // waits for the replays first
  }
};

std::string Executable::not_capturable() const {
  if (dynamic_) return "some dims are unknown (one graph per shape is not kept)";
  for (const ir::Node& n : graph_.nodes) {
    if (n.op == "cond" || n.op == "while")
      return fmt::format("it has control flow ({} reads its predicate on the host)", n.op);
    const OpDef* op = registry().find(n.op);
    if (op != nullptr && op->has(kStateful))
      return fmt::format("it draws random numbers ({}: a replay would repeat its counters)", n.op);
  }
  // A replay saves a launch per step and costs its copies: copying a MiB in or out takes the
  // device about what a launch costs the host, so past a MiB per step the graph is slower
  // (an elementwise chain over large tensors would move its bytes three times).
  int64_t bytes = 0;
  auto add = [&](const TensorType& t) {
    bytes += t.shape.numel() * static_cast<int64_t>(size_of(t.dtype));
  };
  for (int p : graph_.params)
    add(graph_.types[static_cast<size_t>(p)]);
  for (int r : graph_.results)
    add(graph_.types[static_cast<size_t>(r)]);
  for (const ir::VariableSlot& slot : graph_.variables) {
    add(slot.type);  // in, and out where assigned
    add(slot.type);
  }
  const auto steps = static_cast<int64_t>(plan_.steps.size());
  if (bytes > steps * kGraphCopyBytesPerStep)
    return fmt::format("its copies in and out ({} bytes) would cost more than its {} launches",
                       bytes, steps);
  return "";
}

std::optional<std::vector<Tensor>> Executable::run_graph(const std::vector<Tensor>& inputs,
                                                         Device device) const {
  const DeviceBackend& b = checked_backend(device, "function");
  if (!graphs_enabled() || b.capture_begin == nullptr) return std::nullopt;
  std::shared_ptr<DeviceGraph> graph;
  {
    std::lock_guard<std::mutex> lock(device_mu_);
    GraphSlot& slot = device_graphs_[device.index];
    if (slot.off || slot.capturing) return std::nullopt;
    // The first call loads the PTX, uploads the constants and makes the library handles:
    // none of that may happen inside a capture.
    if (!slot.graph && ++slot.calls < 2) return std::nullopt;
    graph = slot.graph;
    if (!graph) slot.capturing = true;
  }
  if (!graph) {
    std::string why;
    try {
      graph = capture(inputs, device, why);
    } catch (const std::exception& e) {  // before the capture (allocating its buffers)
      why = e.what();
    }
    if (log_info())
      std::fprintf(stderr, "kiln: function '%s': %s on %s%s%s\n", graph_.name.c_str(),
                   graph ? "captured a CUDA Graph" : "no CUDA Graph", device.str().c_str(),
                   graph ? "" : ": ", why.c_str());
    std::lock_guard<std::mutex> lock(device_mu_);
    GraphSlot& slot = device_graphs_[device.index];
    slot.capturing = false;
    slot.graph = graph;
    slot.off = graph == nullptr;
    if (!graph) return std::nullopt;
  }
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].device() != device || inputs[i].type() != graph->in[i].type())
      return std::nullopt;
  for (size_t s = 0; s < graph_.variables.size(); ++s) {
    const ir::VariableSlot& slot = graph_.variables[s];
    if (!slot.var || !graph->var_in[s].defined()) continue;
    const Tensor v = slot.var->stored();
    if (!v.defined() || v.is_symbolic() || v.device() != device ||
        v.type() != graph->var_in[s].type())
      return std::nullopt;
  }
  return replay(*graph, inputs);
}

std::shared_ptr<Executable::DeviceGraph> Executable::capture(const std::vector<Tensor>& inputs,
                                                             Device device,
                                                             std::string& why) const {
  why = not_capturable();
  if (!why.empty()) return nullptr;
  const DeviceBackend& b = checked_backend(device, "function");
  auto graph = std::make_shared<DeviceGraph>(device);
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].device() != device) {
      why = fmt::format("input {} is on {}", i, inputs[i].device().str());
      return nullptr;
    }
    graph->in.push_back(Tensor::empty(inputs[i].shape(), inputs[i].dtype(), device));
  }
  // The steps read the variables from the graph's buffers: bind those for the capture.
  const size_t nv = graph_.variables.size();
  graph->var_in.resize(nv);
  graph->var_out.resize(nv);
  std::vector<Tensor> saved(nv);
  for (size_t s = 0; s < nv; ++s) {
    const ir::VariableSlot& slot = graph_.variables[s];
    if (!slot.var) continue;
    saved[s] = slot.var->stored();
    if (!saved[s].defined() || saved[s].is_symbolic() || saved[s].device() != device) {
      why = fmt::format("variable '{}' is not on {}", slot.name, device.str());
      return nullptr;
    }
    graph->var_in[s] = Tensor::empty(saved[s].shape(), saved[s].dtype(), device);
  }
  // Holding the variables' values already: another thread calling this function meanwhile
  // (it runs step by step) reads the same values through them.
  std::vector<Tensor> from, to;
  for (size_t s = 0; s < nv; ++s)
    if (graph->var_in[s].defined()) {
      from.push_back(saved[s].is_contiguous() ? saved[s] : saved[s].contiguous());
      to.push_back(graph->var_in[s]);
    }
  copy_all(b, device, from, to);
  for (size_t s = 0; s < nv; ++s)
    if (graph->var_in[s].defined()) graph_.variables[s].var->store(graph->var_in[s]);
  std::vector<Tensor> results;
  std::string failed;
  void* handle = nullptr;
  try {
    b.capture_begin(device.index);
    try {
      results = run_steps(graph->in, device);
    } catch (const std::exception& e) {
      failed = e.what();
    }
    handle = b.capture_end(device.index, why);
  } catch (const std::exception& e) {  // the capture could not start
    failed = e.what();
  }
  // What the steps assigned, then the variables as the caller left them.
  for (size_t s = 0; s < nv; ++s) {
    if (!graph->var_in[s].defined()) continue;
    const Tensor now = graph_.variables[s].var->stored();
    if (now.id() != graph->var_in[s].id()) graph->var_out[s] = now;
    graph_.variables[s].var->store(saved[s]);
  }
  if (!failed.empty()) why = failed;
  if (handle == nullptr || !failed.empty()) {
    if (handle != nullptr) b.graph_destroy(device.index, handle);
    return nullptr;
  }
  graph->handle = handle;
  graph->results = std::move(results);
  return graph;
}

std::vector<Tensor> Executable::replay(DeviceGraph& g, const std::vector<Tensor>& inputs) const {
  const DeviceBackend& b = checked_backend(g.device, "function");
  std::lock_guard<std::mutex> lock(g.mu);
  std::vector<Tensor> src, dst;
  for (size_t i = 0; i < inputs.size(); ++i) {
    src.push_back(inputs[i].is_contiguous() ? inputs[i] : inputs[i].contiguous());
    dst.push_back(g.in[i]);
  }
  for (size_t s = 0; s < g.var_in.size(); ++s)
    if (g.var_in[s].defined()) {
      const Tensor v = graph_.variables[s].var->stored();
      src.push_back(v.is_contiguous() ? v : v.contiguous());
      dst.push_back(g.var_in[s]);
    }
  copy_all(b, g.device, src, dst);
  b.graph_launch(g.device.index, g.handle);
  replays.fetch_add(1, std::memory_order_relaxed);
  // Out into fresh tensors: the next replay writes the graph's buffers again.
  src.clear();
  dst.clear();
  auto fresh = [&](const Tensor& t) {
    if (!t.defined() || t.device() != g.device) return t;  // a host scalar made at capture
    if (!t.is_contiguous()) return t.contiguous();         // a view: its copy is fresh
    Tensor to = Tensor::empty(t.shape(), t.dtype(), g.device);
    src.push_back(t);
    dst.push_back(to);
    return to;
  };
  std::vector<Tensor> results;
  results.reserve(g.results.size());
  for (const Tensor& r : g.results)
    results.push_back(fresh(r));
  std::vector<std::pair<size_t, Tensor>> assigned;
  for (size_t s = 0; s < g.var_out.size(); ++s)
    if (g.var_out[s].defined()) assigned.emplace_back(s, fresh(g.var_out[s]));
  copy_all(b, g.device, src, dst);
  for (auto& [s, v] : assigned)
    graph_.variables[s].var->store(std::move(v));
  return results;
}

int64_t cuda_graph_replays() {
  return replays.load(std::memory_order_relaxed);
}

}  // namespace kiln::jit
