#pragma once

// The Executable (DESIGN.md section 2, idea 6): what a compiled concrete function runs. A flat
// list of steps over one value table per call: generated kernels (a fusion group each, split
// across threads by parallel_for) and, for everything else, the node's eager kernel or
// library call (matmul and convolution through oneDNN), variable reads and assigns, random
// draws with fresh counters, and control flow. Each call owns its value table, so several
// threads may call one Executable at once.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <kiln/jit/buffer_assignment.h>
#include <kiln/jit/cpu/codegen.h>
#include <kiln/jit/fusion.h>
#include <kiln/tracer/function.h>

namespace kiln::jit {

class Executable final : public tracer::CompiledGraph {
 public:
  // Optimizes, fuses and compiles `traced`. Under KILN_DUMP=dir it writes the traced and
  // optimized IR, the fusion groups, the LLVM IR (.ll) and the assembly (.s).
  explicit Executable(const ir::Graph& traced);
  ~Executable() override;
  Executable(const Executable&) = delete;
  Executable& operator=(const Executable&) = delete;

  std::vector<Tensor> run(const std::vector<Tensor>& inputs) const override;
  int64_t kernel_count() const override;
  std::string optimized_ir() const override;
  std::string dot() const override;

  const ir::Graph& graph() const { return graph_; }
  const FusionPlan& plan() const { return plan_; }
  const BufferAssignment& buffers() const { return buffers_; }
  // One per fusion group: what the x86 kernels were emitted from (and the PTX ones can be).
  const std::vector<cpu::KernelPlan>& kernels() const { return kernels_; }

 private:
  // Kernel k over the values; on `device`, through its generated device code.
  void run_group(size_t k, std::vector<Tensor>& vals, Device device) const;
  // What an elementwise kernel's call passes (codegen.h), with the tensors they point into.
  struct Launch {
    std::vector<void*> bufs;
    std::vector<int64_t> dims;
    std::vector<Tensor> keep;
    int64_t numel = 0;
    bool stream = false;  // may take the streaming entry
  };
  // Makes elementwise kernel k's outputs and call; false where the group ran on the eager
  // kernels instead (a run-time shape the kernel was not specialized for).
  bool prepare_group(size_t k, std::vector<Tensor>& vals, Device device, Launch& launch) const;
  // Step k, a product, and step k + 1, its epilogue kernel (fusion.h,
  // pair_product_epilogues), on the CPU.
  void run_product_epilogue(size_t k, std::vector<Tensor>& vals) const;
  void run_program(size_t k, std::vector<Tensor>& vals, Device device) const;
  // Runs kernel k over `units` (elements, rows or columns, as the kernel's loop counts them):
  // split across the CPU's threads with `grain` units per thread at least, or launched on
  // the device. `stream`: the kernel's streaming entry (CPU; 64-byte aligned outputs).
  void execute(size_t k, std::span<void*> bufs, std::span<int64_t> dims, int64_t units,
               int64_t grain, Device device, bool stream = false) const;
  // The calls with tensors on another device: the same steps, with the kernels as PTX
  // (run_steps), or a replay of the CUDA Graph captured from them (device_graph.cpp).
  std::vector<Tensor> run_on_device(const std::vector<Tensor>& inputs, Device device) const;
  std::vector<Tensor> run_steps(const std::vector<Tensor>& inputs, Device device) const;
  // CUDA Graphs (device_graph.cpp): the second call on a device captures the steps, that
  // call and later ones replay them; nullopt where the call runs step by step instead.
  struct DeviceGraph;
  struct GraphSlot {
    int calls = 0;
    bool off = false;  // never captured on this device (why was logged under KILN_LOG)
    bool capturing = false;
    std::shared_ptr<DeviceGraph> graph;
  };
  std::optional<std::vector<Tensor>> run_graph(const std::vector<Tensor>& inputs,
                                               Device device) const;
  std::shared_ptr<DeviceGraph> capture(const std::vector<Tensor>& inputs, Device device,
                                       std::string& why) const;
  std::vector<Tensor> replay(DeviceGraph& g, const std::vector<Tensor>& inputs) const;
  // Why this graph can never be captured (unknown dims, random draws, control flow); empty
  // where it may be.
  std::string not_capturable() const;
  mutable std::map<int, GraphSlot> device_graphs_;  // per CUDA device index, under device_mu_
  // The value of a creation op without state (fill, iota, ...) on `device`: made on the first
  // call and kept, as the constants are.
  Tensor device_created(const ir::Node& n, Device device) const;
  mutable std::map<std::pair<int, const ir::Node*>, Tensor> device_created_;
  // The kernels' device code for `device`, emitted and loaded on first use.
  const std::vector<void*>& device_kernels(Device device) const;
  std::string kernels_text() const;
  void plan_in_place();

  // How run() carries out each step on the CPU, decided once (plan_steps). The direct kinds
  // skip what the interpreter's run_node does per node (finding the op by name, inferring its
  // types again, the hooks): they run while dispatch is plain (dispatch_is_plain), and the
  // steps go through run_node otherwise.
  enum class StepKind : uint8_t {
    group,            // a generated kernel
    pair,             // a product and its epilogue kernel: steps k and k + 1
    immediate,        // a constant that every reader compiled into its code: nothing to run
    constant,         // binds one of the graph's constants
    read_variable,    // binds a variable's stored value
    assign_variable,  // stores a value of the variable's own type
    call,             // an op with static types: its CPU kernel, called directly
    node,             // anything else, through run_node
  };
  struct StepPlan {
    StepKind kind = StepKind::node;
    int index = -1;                     // constant: the graph's constant; variables: the slot
    kiln::KernelFn kernel = nullptr;    // call: the op's CPU kernel
    std::vector<TensorType> out_types;  // call: its outputs' types
    bool serial = false;  // call: a small product, run on the calling thread (step_plan.cpp)
    // call: a product of a weight this function assigns, its contraction split across this
    // many threads (step_plan.cpp); 0 for none.
    int split_threads = 0;
  };
  void plan_steps();
  void run_step(size_t k, std::vector<Tensor>& vals, bool plain) const;
  // A call with split_threads: false where the operands' layouts or oneDNN refuse it.
  bool run_split_product(const ir::Node& n, std::span<const Tensor> in, const StepPlan& p,
                         std::vector<Tensor>& vals) const;
  // Runs a group's nodes on the eager kernels (a run-time shape its kernel was not made
  // for), binding first the constants its code had as immediates.
  void run_group_eagerly(const FusionGroup& grp, std::vector<Tensor>& vals) const;
  std::vector<StepPlan> step_plans_;
  std::vector<int> constant_of_;     // per value: the graph's constant it is, or -1
  std::vector<int> assigned_slots_;  // the variables some step assigns, each once

  ir::Graph graph_;  // optimized
  FusionPlan plan_;
  std::vector<cpu::KernelPlan> kernels_;  // one per fusion group
  std::vector<cpu::KernelFn> fns_;
  std::vector<cpu::KernelFn> stream_fns_;      // per kernel: its streaming entry, or null
  std::shared_ptr<const void> kernel_module_;  // keeps fns_' code loaded
  bool dynamic_ = false;  // some value has an unknown dim: shapes are checked per call
  // Liveness: after step k, the values whose last use was step k are released, so their
  // blocks return to the caching allocator and the following outputs reuse them.
  std::vector<std::vector<int>> release_after_;
  // Per step: a product that runs with the next step, its epilogue (fusion.h).
  std::vector<bool> product_epilogue_;
  // Each call carves its intermediates from one arena of buffers_.arena_bytes.
  BufferAssignment buffers_;
  // Per fusion group: outputs written over an input that dies there (elementwise kernels).
  std::vector<std::vector<InPlace>> in_place_;
  // Under KILN_PROFILE=1: nanoseconds per step, the first call's apart from the later
  // calls' (2 × steps), and the calls; printed to stderr when the Executable is destroyed.
  std::unique_ptr<std::atomic<int64_t>[]> profile_ns_;
  mutable std::atomic<int64_t> profile_calls_{0};
  std::string profile_text() const;
  mutable std::mutex device_mu_;
  mutable std::map<int, std::vector<void*>> device_fns_;  // per CUDA device index
  // The graph's constants on each device, by (device index, value).
  Tensor device_constant(const ir::Node& n, Device device) const;
  mutable std::map<std::pair<int, int>, Tensor> device_constants_;
};

// The output size in bytes from which a flat elementwise kernel runs its streaming entry
// (cpu::can_stream); below 0, the default: the last-level cache's size. Read when a function
// compiles (whether to emit the entry) and when it runs (whether to call it). For tests.
void set_stream_threshold(int64_t bytes);

// CUDA Graph replays of compiled functions so far, in this process (device_graph.cpp). For
// tests and benchmarks: whether calls took the graph path.
int64_t cuda_graph_replays();

// The tracer's compiler: one Executable per structurally identical graph (same text, same
// bound variables), shared by every concrete function that traces to it.
std::shared_ptr<const tracer::CompiledGraph> compile(const ir::Graph& g);

}  // namespace kiln::jit
