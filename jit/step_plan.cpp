// How the Executable runs its steps on the CPU (executable.h, StepKind). The interpreter's
// run_node finds each node's op by name, compares its op against the special ones, infers its
// output types again and goes through the dispatch hooks; in a compiled train step those costs
// come back for every variable read and assign, every constant and every library call, some
// sixty times per call. Here each step's kind, kernel and output types are found once, when the
// function compiles, and the constants that every reader compiled into its code as immediates
// are not bound at all.
#include <algorithm>
#include <functional>
#include <optional>

#include <kiln/backends/cpu/linalg.h>
#include <kiln/backends/cpu/parallel.h>
#include <kiln/core/arena.h>
#include <kiln/core/dispatch.h>
#include <kiln/jit/executable.h>
#include <kiln/jit/fusion.h>
#include <kiln/jit/graph_util.h>

namespace kiln::jit {
namespace {

// Products with fewer multiply-adds run on the calling thread (cpu::SerialScope): a few
// microseconds of work, which waking the other threads does not pay for. The MLP step's
// [128, 128]^T x [128, 10] weight gradient took 4.1 us through dnnl_sgemm on two threads and
// 3.0 us on one, alone; inside the step, within 0.3 us of each other in the VM's quiet phases
// and 6.7-7.0 against 3.9 us in its slow ones.
constexpr int64_t kSerialProductMacs = int64_t{1} << 18;

bool is_small_product(const ir::Graph& g, const ir::Node& n) {
  if (n.op != "matmul" && n.op != "matmul_bias_act") return false;
  const TensorType& a = g.types[static_cast<size_t>(n.inputs[0])];
  const TensorType& out = g.types[static_cast<size_t>(n.outputs[0])];
  if (a.shape.rank() < 1 || !fully_known(a) || !fully_known(out)) return false;
  return out.shape.numel() * a.shape[a.shape.rank() - 1] < kSerialProductMacs;
}

// A large f32 product x W of a weight W that the function assigns (a train step's forward
// through a layer it trains) runs with its contraction split across the threads rather than
// its rows: thread t reads rows [k0, k1) of W, the rows it later writes in the optimizer's
// update, since the update runs paired with W's gradient product and split the same way
// (product_epilogue.cpp). Split by rows, every thread reads all of W, and the update's
// writes then pull each line back from the other cores' caches. The partial products cost a
// sum over the output, [M, N] against W's [K, N].
//
// The MLP step's W1 is [784, 128]: compiled step 146.2 against 144.5 us (medians of 400
// blocks of 16, alternated in one process) in the VM's quiet phases, and 216.7 against 164.9
// us in its slow ones, where cross-core traffic is what slows. In a stand-alone Adam over
// [784, 128] from the last-level cache on two threads, W read by both threads first took 12.9
// us, read by each thread's own half 8.0.
int split_contraction_threads(const ir::Graph& g, const ir::Node& n,
                              const std::vector<bool>& trained) {
  if (n.op != "matmul" && n.op != "matmul_bias_act") return 0;
  const TensorType& a = g.types[static_cast<size_t>(n.inputs[0])];
  const TensorType& w = g.types[static_cast<size_t>(n.inputs[1])];
  if (!trained[static_cast<size_t>(n.inputs[1])] || a.shape.rank() != 2 || w.shape.rank() != 2 ||
      !fully_known(a) || !fully_known(w) || a.dtype != DType::f32 || w.dtype != DType::f32)
    return 0;
  const int64_t M = a.shape[0], K = a.shape[1], N = w.shape[1];
  if (M * K * N < kMinEpilogueProductMacs) return 0;
  // As many threads as the pair of W's gradient [K, N] = x^T [K, M] dy [M, N] takes.
  const int threads = epilogue_threads(K, N, M);
  return threads > 1 ? threads : 0;
}

}  // namespace

void Executable::plan_steps() {
  const ir::Graph& g = graph_;
  constant_of_.assign(g.types.size(), -1);
  for (const ir::Node& n : g.nodes)
    if (n.op == "constant") constant_of_[static_cast<size_t>(n.outputs[0])] = n.attrs.i("index");
  // The values some step or the caller reads from the value table: everything a step reads,
  // except a kernel's immediates.
  std::vector<bool> read(g.types.size(), false);
  for (int v : g.results)
    read[static_cast<size_t>(v)] = true;
  for (const Step& s : plan_.steps) {
    if (s.group < 0) {
      for (int v : g.nodes[static_cast<size_t>(s.node)].inputs)
        read[static_cast<size_t>(v)] = true;
      continue;
    }
    const FusionGroup& grp = plan_.groups[static_cast<size_t>(s.group)];
    for (int n : grp.prologue)
      for (int v : g.nodes[static_cast<size_t>(n)].inputs)
        read[static_cast<size_t>(v)] = true;
    for (const cpu::KernelInput& in : kernels_[static_cast<size_t>(s.group)].inputs)
      if (in.kind != cpu::InputKind::immediate) read[static_cast<size_t>(in.value)] = true;
  }
  // The variables a call may assign: control flow's subgraphs run with this graph's slots.
  std::function<void(const ir::Graph&)> assigns = [&](const ir::Graph& sub) {
    for (const ir::Node& n : sub.nodes) {
      for (const auto& s : n.subgraphs)
        assigns(*s);
      if (n.op != "assign_variable") continue;
      const int slot = static_cast<int>(n.attrs.i("var"));
      if (std::find(assigned_slots_.begin(), assigned_slots_.end(), slot) == assigned_slots_.end())
        assigned_slots_.push_back(slot);
    }
  };
  assigns(g);
  step_plans_.assign(plan_.steps.size(), StepPlan{});
  // Per value: a read of a variable the function assigns.
  std::vector<bool> trained(g.types.size(), false);
  for (const ir::Node& n : g.nodes)
    if (n.op == "read_variable" &&
        std::find(assigned_slots_.begin(), assigned_slots_.end(),
                  static_cast<int>(n.attrs.i("var"))) != assigned_slots_.end())
      trained[static_cast<size_t>(n.outputs[0])] = true;
  for (size_t k = 0; k < plan_.steps.size(); ++k) {
    const Step& s = plan_.steps[k];
    StepPlan& p = step_plans_[k];
    if (s.group >= 0) {
      p.kind = StepKind::group;
      continue;
    }
    if (product_epilogue_[k]) {
      p.kind = StepKind::pair;
      continue;
    }
    const ir::Node& n = g.nodes[static_cast<size_t>(s.node)];
    if (n.op == "constant") {
      p.index = static_cast<int>(n.attrs.i("index"));
      p.kind = read[static_cast<size_t>(n.outputs[0])] ? StepKind::constant : StepKind::immediate;
      continue;
    }
    // Variable steps and calls rely on the static types: with unknown dims the interpreter
    // checks each call's shapes.
    if (dynamic_) continue;
    if (n.op == "read_variable" || n.op == "assign_variable") {
      p.index = static_cast<int>(n.attrs.i("var"));
      p.kind = n.op == "read_variable" ? StepKind::read_variable : StepKind::assign_variable;
      continue;
    }
    const OpDef* op = registry().find(n.op);
    if (op == nullptr || op->has(kStateful) || op->kernel(DeviceType::cpu) == nullptr ||
        !n.subgraphs.empty())
      continue;
    p.kind = StepKind::call;
    p.kernel = op->kernel(DeviceType::cpu);
    for (int v : n.outputs)
      p.out_types.push_back(g.types[static_cast<size_t>(v)]);
    for (const TensorType& t : p.out_types)
      if (!fully_known(t)) p.kind = StepKind::node;
    p.serial = is_small_product(g, n);
    p.split_threads = split_contraction_threads(g, n, trained);
  }
}

void Executable::run_step(size_t k, std::vector<Tensor>& vals, bool plain) const {
  const Step& s = plan_.steps[k];
  const StepPlan& p = step_plans_[k];
  switch (p.kind) {
    case StepKind::immediate:
      return;
    case StepKind::pair:
      return run_product_epilogue(k, vals);
    case StepKind::constant:
      vals[static_cast<size_t>(graph_.nodes[static_cast<size_t>(s.node)].outputs[0])] =
          graph_.constants[static_cast<size_t>(p.index)];
      return;
    default:
      break;
  }
  std::optional<memory::ArenaScope::Pause> outside;
  if (buffers_.outside_arena[k]) outside.emplace();
  if (p.kind == StepKind::group)
    return run_group(static_cast<size_t>(s.group), vals, Device::cpu());
  const ir::Node& n = graph_.nodes[static_cast<size_t>(s.node)];
  if (!plain || p.kind == StepKind::node)
    return tracer::run_node(graph_, n, vals, graph_.variables);
  const ir::VariableSlot* slot = p.index >= 0 && p.kind != StepKind::call
                                     ? &graph_.variables[static_cast<size_t>(p.index)]
                                     : nullptr;
  if (slot != nullptr)
    KILN_CHECK(slot->var != nullptr, "function '{}': variable '{}' is not bound", graph_.name,
               slot->name);
  if (p.kind == StepKind::read_variable) {
    vals[static_cast<size_t>(n.outputs[0])] = slot->var->stored();
    return;
  }
  if (p.kind == StepKind::assign_variable) {
    // The value has the variable's type (the trace checked the assign, and a variable's type
    // never changes); a generated kernel's outputs are dense, anything else is made so.
    const Tensor& t = vals[static_cast<size_t>(n.inputs[0])];
    slot->var->store(t.is_contiguous() ? t : t.contiguous());
    return;
  }
  // A call: the op's kernel, as dispatch would run it with no hooks (the types are the ones
  // inference gave when the function was traced).
  constexpr size_t kInline = 6;
  Tensor inline_in[kInline];
  std::vector<Tensor> many;
  std::span<const Tensor> in;
  if (n.inputs.size() <= kInline) {
    for (size_t i = 0; i < n.inputs.size(); ++i)
      inline_in[i] = vals[static_cast<size_t>(n.inputs[i])];
    in = std::span<const Tensor>(inline_in, n.inputs.size());
  } else {
    for (int v : n.inputs)
      many.push_back(vals[static_cast<size_t>(v)]);
    in = many;
  }
  if (p.split_threads > 1 && !omp_in_parallel() && !kiln::cpu::t_serial &&
      run_split_product(n, in, p, vals))
    return;
  std::optional<kiln::cpu::SerialScope> serial;
  if (p.serial) serial.emplace();
  std::vector<Tensor> out = p.kernel(in, n.attrs, p.out_types);
  KILN_ASSERT(out.size() == n.outputs.size(), "function '{}': {} returned {} outputs, not {}",
              graph_.name, n.op, out.size(), n.outputs.size());
  for (size_t i = 0; i < out.size(); ++i)
    vals[static_cast<size_t>(n.outputs[i])] = std::move(out[i]);
}

bool Executable::run_split_product(const ir::Node& n, std::span<const Tensor> in, const StepPlan& p,
                                   std::vector<Tensor>& vals) const {
  const std::optional<kiln::cpu::RowBlockProduct> product =
      kiln::cpu::RowBlockProduct::make(in[0], in[1]);
  if (!product) return false;  // an operand the matmul kernel must copy first
  const bool bias = n.op == "matmul_bias_act";
  const Tensor b = bias ? in[2].contiguous() : Tensor();
  const Shape& shape = p.out_types[0].shape;
  Tensor out = Tensor::empty(shape, DType::f32, Device::cpu());
  Tensor partials =
      Tensor::empty({p.split_threads - 1, shape[0], shape[1]}, DType::f32, Device::cpu());
  if (!product->split_contraction(bias ? b.data<float>() : nullptr,
                                  bias && n.attrs.str("act") == "relu", out.mutable_data<float>(),
                                  partials.mutable_data<float>(), p.split_threads))
    return false;
  vals[static_cast<size_t>(n.outputs[0])] = std::move(out);
  return true;
}

void Executable::run_group_eagerly(const FusionGroup& grp, std::vector<Tensor>& vals) const {
  std::vector<int> definer;  // found when first needed
  for (int i : grp.nodes) {
    const ir::Node& n = graph_.nodes[static_cast<size_t>(i)];
    for (int v : n.inputs) {
      if (vals[static_cast<size_t>(v)].defined()) continue;
      if (const int c = constant_of_[static_cast<size_t>(v)]; c >= 0) {
        vals[static_cast<size_t>(v)] = graph_.constants[static_cast<size_t>(c)];
        continue;
      }
      // A row contraction's H^T, whose transpose the plan kept no step for (a view).
      if (definer.empty()) definer = definers(graph_);
      if (const int d = definer[static_cast<size_t>(v)];
          d >= 0 && graph_.nodes[static_cast<size_t>(d)].op == "transpose")
        tracer::run_node(graph_, graph_.nodes[static_cast<size_t>(d)], vals, graph_.variables);
    }
    tracer::run_node(graph_, n, vals, graph_.variables);
  }
}

}  // namespace kiln::jit
