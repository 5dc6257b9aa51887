#include <kiln/jit/executable.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>

#include <kiln/backends/cpu/parallel.h>
#include <kiln/core/arena.h>
#include <kiln/core/device_backend.h>
#include <kiln/core/dispatch.h>
#include <kiln/core/random.h>
#include <kiln/jit/cuda/ptx.h>
#include <kiln/jit/pipeline.h>
#include <kiln/tracer/file_util.h>

namespace kiln::jit {
namespace {

// The size of the cache the CPU's last level shares among cores (sysfs reports the
// slice a core actually sees; sysconf may report a whole socket's), else 32 MiB.
int64_t last_level_cache_bytes() {
  static const int64_t bytes = [] {
    int64_t best = 0;
    for (int i = 0; i < 8; ++i) {
      const std::string dir = fmt::format("/sys/devices/system/cpu/cpu0/cache/index{}/", i);
      std::ifstream level(dir + "level"), size(dir + "size");
      int lv = 0;
      int64_t n = 0;
      std::string unit;
      if (!(level >> lv) || !(size >> n)) continue;
      std::getline(size, unit);
      n *= unit == "K" ? 1024 : unit == "M" ? 1024 * 1024 : 1;
      if (lv >= 2 && n > best) best = n;
    }
    return best > 0 ? best : int64_t{32} << 20;
  }();
  return bytes;
}

std::atomic<int64_t> stream_threshold{-1};

// The output bytes from which a kernel streams (set_stream_threshold).
int64_t stream_bytes() {
  const int64_t t = stream_threshold.load(std::memory_order_relaxed);
  return t >= 0 ? t : last_level_cache_bytes();
}

bool has_unknown(const Shape& s) {
  for (int64_t d : s)
    if (d < 0) return true;
  return false;
}

// Writes dir/<name>.<suffix> through a temporary file and a rename.
void dump(const std::string& dir, const std::string& name, const std::string& suffix,
          const std::string& text) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  const fs::path path = fs::path(dir) / (file_safe(name) + "." + suffix);
  write_file_atomically(path, text, "KILN_DUMP");
}

// Nodes that run a kernel of their own when not fused (library calls and eager kernels);
// views (transpose, slice, broadcast_to; reshape, which copies only a non-contiguous input)
// only describe memory.
bool runs_a_kernel(const ir::Node& n) {
  return n.op != "constant" && n.op != "read_variable" && n.op != "assign_variable" &&
         !is_view_op(n.op);
}

// A kernel's input on `device`, made dense when `dense`. The copy this may take is one the
// buffer plan does not know of: it is kept out of the arena, whose placement must follow
// the plan's (buffer_assignment.cpp) for every planned buffer to fit.
Tensor kernel_input(Tensor t, Device device, bool dense) {
  if (t.device() == device && (t.is_contiguous() || !dense)) return t;
  memory::ArenaScope::Pause unplanned;
  if (t.device() != device) t = t.to(device);  // the graph's constants live on the host
  if (dense && !t.is_contiguous()) t = t.contiguous();
  return t;
}

}  // namespace

Executable::Executable(const ir::Graph& traced) : graph_(optimize(traced)) {
  matmul_epilogue().run(graph_);
  conv_epilogue().run(graph_);
  expand_adam().run(graph_);
  for (const TensorType& t : graph_.types)
    dynamic_ |= has_unknown(t.shape);
  plan_ = plan_fusion(graph_, cpu::classify);
  absorb_views(graph_, plan_);
  absorb_contractions(graph_, plan_);
  absorb_row_contractions(graph_, plan_);
  for (size_t k = 0; k < plan_.groups.size(); ++k) {
    cpu::KernelPlan kp = cpu::plan_kernel(graph_, plan_.groups[k], fmt::format("k{}", k));
    // A streaming entry only where the outputs can be large: it costs a second vectorized
    // loop at compile time.
    if (cpu::can_stream(graph_, kp)) {
      const Shape& s = plan_.groups[k].shape;
      int64_t bytes = 0;
      if (!has_unknown(s))
        for (int v : plan_.groups[k].outputs)
          bytes +=
              s.numel() * static_cast<int64_t>(size_of(graph_.types[static_cast<size_t>(v)].dtype));
      kp.stream = has_unknown(s) || bytes >= stream_bytes();
    }
    kernels_.push_back(std::move(kp));
  }
  // Large products whose only reader is a flat elementwise kernel run with it, row block by
  // row block (static shapes only: the pair is not re-checked per call).
  if (!dynamic_)
    product_epilogue_ = pair_product_epilogues(graph_, plan_, [&](int grp) {
      const cpu::KernelPlan& kp = kernels_[static_cast<size_t>(grp)];
      return !kp.rows && !kp.row_program && !kp.column_program &&
             plan_.groups[static_cast<size_t>(grp)].prologue.empty();
    });
  product_epilogue_.resize(plan_.steps.size(), false);
  plan_steps();
  // The last step that reads each value (results are never released). A product's operands
  // live until its epilogue, the next step, is done.
  std::vector<int> last_use(graph_.types.size(), -1);
  for (size_t k = 0; k < plan_.steps.size(); ++k) {
    const int until = static_cast<int>(product_epilogue_[k] ? k + 1 : k);
    for (int v : step_reads(graph_, plan_, plan_.steps[k]))
      last_use[static_cast<size_t>(v)] = until;
  }
  for (int v : graph_.results)
    last_use[static_cast<size_t>(v)] = -1;
  release_after_.resize(plan_.steps.size());
  for (size_t v = 0; v < last_use.size(); ++v)
    if (last_use[v] >= 0)
      release_after_[static_cast<size_t>(last_use[v])].push_back(static_cast<int>(v));
  plan_in_place();
  std::vector<InPlace> pairs;
  for (const auto& g : in_place_)
    pairs.insert(pairs.end(), g.begin(), g.end());
  buffers_ = assign_buffers(graph_, plan_, release_after_, pairs);
  const char* dir = std::getenv("KILN_DUMP");
  const bool want_text = dir != nullptr && *dir != '\0';
  cpu::CompiledKernels compiled = cpu::compile_kernels(graph_, kernels_, want_text);
  fns_ = std::move(compiled.fns);
  stream_fns_ = std::move(compiled.stream_fns);
  kernel_module_ = std::move(compiled.module);
  if (want_text) {
    dump(dir, traced.name, "traced.ir", ir::print(traced));
    dump(dir, traced.name, "optimized.ir", optimized_ir());
    dump(dir, traced.name, "fusion.txt", kernels_text());
    dump(dir, traced.name, "ll", compiled.llvm_ir);
    dump(dir, traced.name, "s", compiled.assembly);
  }
  if (const char* p = std::getenv("KILN_PROFILE"); p != nullptr && *p != '\0' && *p != '0') {
    // Per step: the first call's nanoseconds, then the sum over the later calls.
    profile_ns_ = std::make_unique<std::atomic<int64_t>[]>(2 * plan_.steps.size());
    for (size_t k = 0; k < 2 * plan_.steps.size(); ++k)
      profile_ns_[k].store(0);
  }
}

Executable::~Executable() {
  if (profile_ns_ && profile_calls_.load() > 0) std::fputs(profile_text().c_str(), stderr);
}

// One line per step: its mean time per call, its share of the total, and what it runs. The
// first call warms up (oneDNN generates its kernels there, the caches are cold), so the means
// are over the later calls; with a single call, they are that call's times.
std::string Executable::profile_text() const {
  const int64_t calls = profile_calls_.load();
  const size_t n = plan_.steps.size();
  int64_t first = 0, later = 0;
  for (size_t k = 0; k < n; ++k) {
    first += profile_ns_[k].load();
    later += profile_ns_[n + k].load();
  }
  const bool warm = calls > 1;
  const size_t base = warm ? n : 0;
  const int64_t counted = warm ? calls - 1 : 1, total = warm ? later : first;
  std::string out = fmt::format(
      "KILN_PROFILE '{}': {} calls, the first {:.1f} us in steps{}\n", graph_.name, calls,
      1e-3 * static_cast<double>(first),
      warm ? fmt::format(", the {} later ones {:.1f} us each (the means below)", calls - 1,
                         1e-3 * static_cast<double>(later) / static_cast<double>(calls - 1))
           : std::string());
  for (size_t k = 0; k < n; ++k) {
    if (step_plans_[k].kind == StepKind::immediate) continue;  // never runs
    const Step& s = plan_.steps[k];
    const int64_t ns = profile_ns_[base + k].load();
    std::string what;
    if (s.group >= 0) {
      const FusionGroup& grp = plan_.groups[static_cast<size_t>(s.group)];
      what = fmt::format("kernel k{} over {}:", s.group, grp.shape.str());
      for (int i : grp.nodes)
        what += " " + graph_.nodes[static_cast<size_t>(i)].op;
    } else {
      const ir::Node& node = graph_.nodes[static_cast<size_t>(s.node)];
      what = node.op;
      for (int v : node.outputs)
        what += fmt::format(" {}", graph_.types[static_cast<size_t>(v)].shape.str());
      if (product_epilogue_[k]) what.append(" (timed with its epilogue, the next step)");
    }
    out += fmt::format(
        "  {:9.2f} us {:5.1f}%  {}\n", 1e-3 * static_cast<double>(ns) / counted,
        total > 0 ? 100.0 * static_cast<double>(ns) / static_cast<double>(total) : 0.0, what);
  }
  return out;
}

int64_t Executable::kernel_count() const {
  int64_t n = static_cast<int64_t>(plan_.groups.size());
  for (const Step& s : plan_.steps)
    if (s.node >= 0 && runs_a_kernel(graph_.nodes[static_cast<size_t>(s.node)])) ++n;
  return n;
}

std::string Executable::kernels_text() const {
  std::string out = "kernels {\n";
  for (size_t k = 0; k < plan_.steps.size(); ++k) {
    const Step& s = plan_.steps[k];
    if (s.group >= 0) {
      const FusionGroup& grp = plan_.groups[static_cast<size_t>(s.group)];
      const cpu::KernelPlan& kp = kernels_[static_cast<size_t>(s.group)];
      out += fmt::format("  kernel k{} {} over {}:", s.group,
                         kp.row_program      ? "row program"
                         : kp.column_program ? "column program"
                         : kp.rows           ? "rows"
                                             : "elements",
                         grp.shape.str());
      for (int i : grp.prologue)
        out += " (view " + graph_.nodes[static_cast<size_t>(i)].op + ")";
      for (int i : grp.nodes)
        out += " " + graph_.nodes[static_cast<size_t>(i)].op;
      out += " ->";
      for (int v : grp.outputs)
        out += fmt::format(" %{}", v);
      out += "\n";
    } else {
      const ir::Node& n = graph_.nodes[static_cast<size_t>(s.node)];
      if (!runs_a_kernel(n)) continue;
      out += fmt::format("  call {} ->", n.op);
      for (int v : n.outputs)
        out += fmt::format(" %{}", v);
      if (product_epilogue_[k]) out += ", row blocks into the next kernel";
      if (const int t = step_plans_[k].split_threads; t > 1)
        out += fmt::format(", contraction split across {} threads", t);
      out += "\n";
    }
  }
  return out + "}\n";
}

std::string Executable::optimized_ir() const {
  return ir::print(graph_) + kernels_text();
}

std::string Executable::dot() const {
  std::string out = fmt::format("digraph \"{}\" {{\n  node [shape=box];\n", graph_.name);
  std::map<int, std::string> def;  // value -> step name
  for (int p : graph_.params)
    def[p] = fmt::format("p{}", p);
  for (size_t i = 0; i < graph_.params.size(); ++i)
    out += fmt::format("  p{} [label=\"param {}\", shape=ellipse];\n", graph_.params[i], i);
  int k = 0;
  for (const Step& s : plan_.steps) {
    const std::string id = fmt::format("s{}", k++);
    std::vector<int> ins, outs;
    std::string label;
    if (s.group >= 0) {
      const FusionGroup& grp = plan_.groups[static_cast<size_t>(s.group)];
      label = fmt::format("kernel k{}\\n", s.group);
      for (int i : grp.prologue)
        label += "(view " + graph_.nodes[static_cast<size_t>(i)].op + ") ";
      for (int i : grp.nodes)
        label += graph_.nodes[static_cast<size_t>(i)].op + " ";
      ins = step_reads(graph_, plan_, s);
      outs = grp.outputs;
    } else {
      const ir::Node& n = graph_.nodes[static_cast<size_t>(s.node)];
      label = n.op;
      ins = n.inputs;
      outs = n.outputs;
    }
    out += fmt::format("  {} [label=\"{}\"{}];\n", id, label,
                       s.group >= 0 ? ", style=filled, fillcolor=lightblue" : "");
    for (int v : ins)
      if (def.count(v)) out += fmt::format("  {} -> {};\n", def[v], id);
    for (int v : outs)
      def[v] = id;
  }
  return out + "}\n";
}

void Executable::run_program(size_t k, std::vector<Tensor>& vals, Device device) const {
  const cpu::KernelPlan& kp = kernels_[k];
  const FusionGroup& grp = *kp.group;
  const int64_t r = kp.rank;
  // The row space at run time: unknown dims from a full, per-row or per-column input.
  Shape rows = grp.shape;
  bool ok = true;
  for (const cpu::KernelInput& in : kp.inputs) {
    if (in.kind == cpu::InputKind::immediate || in.kind == cpu::InputKind::scalar) continue;
    const Tensor& t = vals[static_cast<size_t>(in.value)];
    for (int64_t d = 0; d < r; ++d) {
      int64_t have = -1;
      if (in.kind == cpu::InputKind::full && t.rank() == r) have = t.dim(d);
      if (in.kind == cpu::InputKind::row && d < r - 1 && t.rank() >= r - 1) have = t.dim(d);
      if (in.kind == cpu::InputKind::column && d == r - 1 && t.rank() >= 1)
        have = t.dim(t.rank() - 1);
      if (have < 0) continue;
      if (rows[d] < 0) rows[d] = have;
      ok &= rows[d] == have;
    }
  }
  for (int64_t d = 0; d < r; ++d)
    ok &= rows[d] >= 0;
  const int64_t cols = r > 0 ? rows[r - 1] : 1;
  const int64_t num_rows = cols > 0 ? rows.numel() / cols : 0;
  if (ok && dynamic_)
    for (const cpu::KernelInput& in : kp.inputs) {
      const Tensor& t = vals[static_cast<size_t>(in.value)];
      if (in.kind == cpu::InputKind::full) ok &= t.shape() == rows;
      if (in.kind == cpu::InputKind::row) ok &= t.numel() == num_rows;
      if (in.kind == cpu::InputKind::column) ok &= t.numel() == cols;
      if (in.kind == cpu::InputKind::scalar) ok &= t.numel() == 1;
    }
  if (!ok) return run_group_eagerly(grp, vals);
  std::vector<void*> bufs;
  std::vector<Tensor> keep;
  bufs.reserve(kp.inputs.size() + grp.outputs.size());
  keep.reserve(kp.inputs.size());
  for (const cpu::KernelInput& in : kp.inputs) {
    if (in.kind == cpu::InputKind::immediate) continue;
    Tensor t = vals[static_cast<size_t>(in.value)];
    t = kernel_input(std::move(t), device, true);
    bufs.push_back(const_cast<void*>(t.raw_data()));
    keep.push_back(std::move(t));
  }
  for (size_t o = 0; o < grp.outputs.size(); ++o) {
    const TensorType& type = graph_.types[static_cast<size_t>(grp.outputs[o])];
    Shape shape = rows;
    if (!kp.output_full[o] && kp.row_program) {  // per row: [R..., 1] or [R...]
      shape = Shape{};
      for (int64_t d = 0; d < r - 1; ++d)
        shape.push_back(rows[d]);
      if (type.shape.rank() == r) shape.push_back(1);
    } else if (kp.output_per_column[o] > 0) {  // a row contraction's [C, K]
      shape = Shape{cols, kp.output_per_column[o]};
    } else if (!kp.output_full[o]) {  // per column: [1..., C] or [C]
      shape = Shape{};
      for (int64_t d = 0; d + 1 < type.shape.rank(); ++d)
        shape.push_back(1);
      shape.push_back(cols);
    }
    Tensor t = Tensor::empty(shape, type.dtype, device);
    bufs.push_back(const_cast<void*>(t.raw_data()));
    vals[static_cast<size_t>(grp.outputs[o])] = std::move(t);
  }
  if (kp.column_program) {
    int64_t dims[2] = {cols, num_rows};
    execute(k, bufs, dims, cols,
            std::max<int64_t>(8, kiln::cpu::kElementwiseGrain /
                                     std::max<int64_t>(num_rows * kp.work_per_element, 1)),
            device);
    return;
  }
  int64_t dims[1] = {cols};
  execute(k, bufs, dims, num_rows,
          std::max<int64_t>(1, kiln::cpu::kElementwiseGrain / std::max<int64_t>(cols, 1)), device);
}

void Executable::run_group(size_t k, std::vector<Tensor>& vals, Device device) const {
  const cpu::KernelPlan& kp = kernels_[k];
  if (kp.row_program || kp.column_program) return run_program(k, vals, device);
  Launch l;
  if (!prepare_group(k, vals, device, l) || l.numel == 0) return;
  if (!kp.rows) {
    execute(k, l.bufs, l.dims, l.numel, kiln::cpu::kElementwiseGrain, device, l.stream);
  } else {
    const int64_t cols = l.dims[0];
    execute(k, l.bufs, l.dims, l.numel / cols,
            std::max<int64_t>(1, kiln::cpu::kElementwiseGrain / cols), device);
  }
}

bool Executable::prepare_group(size_t k, std::vector<Tensor>& vals, Device device,
                               Launch& launch) const {
  const cpu::KernelPlan& kp = kernels_[k];
  const FusionGroup& grp = *kp.group;
  // The prologue's views of outside values (no copies): the kernel reads them by stride.
  for (int n : grp.prologue)
    tracer::run_node(graph_, graph_.nodes[static_cast<size_t>(n)], vals, graph_.variables);
  const int64_t r = kp.rank;
  Shape out_shape = grp.shape;
  bool ok = true;
  if (dynamic_) {
    // The iteration space is the broadcast of the inputs; check each input's kind holds.
    for (int64_t d = 0; d < r; ++d)
      if (out_shape[d] < 0) out_shape[d] = 1;
    for (const cpu::KernelInput& in : kp.inputs) {
      if (in.kind == cpu::InputKind::immediate) continue;
      const Tensor& t = vals[static_cast<size_t>(in.value)];
      const int64_t lead = r - t.rank();
      for (int64_t d = 0; d < t.rank(); ++d) {
        const int64_t td = t.dim(d);
        int64_t& od = out_shape[lead + d];
        if (td == 1) continue;
        if (od == 1 && grp.shape[lead + d] < 0) od = td;
        ok &= od == td;
      }
    }
    for (const cpu::KernelInput& in : kp.inputs) {
      if (in.kind == cpu::InputKind::immediate) continue;
      const Tensor& t = vals[static_cast<size_t>(in.value)];
      if (in.kind == cpu::InputKind::full) ok &= t.shape() == out_shape;
      if (in.kind == cpu::InputKind::scalar) ok &= t.numel() == 1;
      if (in.kind == cpu::InputKind::broadcast && !in.view && r > 0 && out_shape[r - 1] != 1) {
        const int64_t last = t.rank() > 0 ? t.dim(t.rank() - 1) : 1;
        ok &= (last == 1) == in.last_dim_broadcast;
      }
    }
  }
  if (!ok) {
    // A run-time shape the kernel was not specialized for (an unknown dim that is 1 and
    // broadcasts): the group's nodes run on the eager kernels instead.
    run_group_eagerly(grp, vals);
    return false;
  }
  // In place: an output takes the buffer of an input that dies here when nothing else
  // holds that buffer (decided before the copies below add references).
  std::vector<std::pair<int, Tensor>> reused;
  if (!in_place_[k].empty()) reused.reserve(in_place_[k].size());
  for (const InPlace& p : in_place_[k]) {
    const Tensor& t = vals[static_cast<size_t>(p.input)];
    if (!t.is_contiguous() || t.shape() != out_shape || t.device() != device) continue;
    if (p.variable < 0) {
      if (t.data_is_unshared()) reused.emplace_back(p.output, t);
      continue;
    }
    // Donation: the buffer is held by the variable and this read only.
    const ir::VariableSlot& slot = graph_.variables[static_cast<size_t>(p.variable)];
    const bool same = slot.var && slot.var->stored().defined() && slot.var->stored().id() == t.id();
    if (same && t.data_is_unshared(2)) reused.emplace_back(p.output, t);
  }
  // All or none: the kernel has a loop version for each (see KernelPlan::in_place).
  if (reused.size() != in_place_[k].size()) reused.clear();
  std::vector<void*>& bufs = launch.bufs;
  std::vector<int64_t>& dims = launch.dims;
  std::vector<int64_t> view_cols;
  std::vector<Tensor>& keep = launch.keep;
  bufs.reserve(kp.inputs.size() + grp.outputs.size());
  keep.reserve(kp.inputs.size());
  if (kp.rows) {
    dims.push_back(out_shape[r - 1]);
    for (int64_t d = 0; d < r - 1; ++d)
      dims.push_back(out_shape[d]);
  }
  for (const cpu::KernelInput& in : kp.inputs) {
    if (in.kind == cpu::InputKind::immediate) continue;
    Tensor t = vals[static_cast<size_t>(in.value)];
    t = kernel_input(std::move(t), device, !in.view);
    bufs.push_back(const_cast<void*>(t.raw_data()));
    if (in.kind == cpu::InputKind::broadcast) {
      // Element strides of the input over the output's dims (0 where it broadcasts): dense
      // ones, or a view's own.
      const int64_t lead = r - t.rank();
      std::vector<int64_t> st(static_cast<size_t>(r), 0);
      int64_t acc = 1;
      for (int64_t d = r - 1; d >= 0; --d) {
        const int64_t td = d >= lead ? t.dim(d - lead) : 1;
        const int64_t own = in.view && d >= lead ? t.strides()[static_cast<size_t>(d - lead)] : acc;
        st[static_cast<size_t>(d)] = td == 1 ? 0 : own;
        acc *= td;
      }
      for (int64_t d = 0; d < r - 1; ++d)
        dims.push_back(st[static_cast<size_t>(d)]);
      if (in.view) view_cols.push_back(r > 0 ? st[static_cast<size_t>(r - 1)] : 0);
    }
    keep.push_back(std::move(t));
  }
  dims.insert(dims.end(), view_cols.begin(), view_cols.end());
  for (int v : grp.outputs) {
    Tensor o;
    for (const auto& [out, t] : reused)
      if (out == v) o = t;
    if (!o.defined())
      o = Tensor::empty(out_shape, graph_.types[static_cast<size_t>(v)].dtype, device);
    bufs.push_back(const_cast<void*>(o.raw_data()));
    vals[static_cast<size_t>(v)] = std::move(o);
  }
  launch.numel = out_shape.numel();
  if (!kp.rows) {
    // Outputs larger than the last-level cache would not stay there for their consumer:
    // the streaming entry writes them around the caches (codegen.h, can_stream).
    bool stream = device.is_cpu() && reused.empty() && stream_fns_[k] != nullptr;
    int64_t out_bytes = 0;
    for (size_t o = 0; o < grp.outputs.size(); ++o) {
      out_bytes += launch.numel * static_cast<int64_t>(size_of(vals[grp.outputs[o]].dtype()));
      stream &= reinterpret_cast<uintptr_t>(bufs[bufs.size() - grp.outputs.size() + o]) % 64 == 0;
    }
    launch.stream = stream && out_bytes >= stream_bytes();
  }
  return true;
}

void Executable::execute(size_t k, std::span<void*> bufs, std::span<int64_t> dims, int64_t units,
                         int64_t grain, Device device, bool stream) const {
  // The ABI both targets share (codegen.h, ptx.h): checked on every call.
  KILN_ASSERT(static_cast<int64_t>(bufs.size()) == cpu::buffers_size(kernels_[k]) &&
                  static_cast<int64_t>(dims.size()) == cpu::dims_size(kernels_[k]),
              "function '{}': kernel {} got {} buffers and {} dims, its ABI says {} and {}",
              graph_.name, k, bufs.size(), dims.size(), cpu::buffers_size(kernels_[k]),
              cpu::dims_size(kernels_[k]));
  if (device.is_cpu()) {
    const cpu::KernelFn fn = stream ? stream_fns_[k] : fns_[k];
    kiln::cpu::parallel_for(units, grain,
                            [&](int64_t b, int64_t e) { fn(bufs.data(), dims.data(), b, e); });
    return;
  }
  // The PTX entry's parameters: the buffers, the dims, the unit count (jit/cuda/ptx.h).
  std::vector<void*> args;
  for (void*& b : bufs)
    args.push_back(&b);
  for (int64_t& d : dims)
    args.push_back(&d);
  args.push_back(&units);
  checked_backend(device, "function")
      .launch(device.index, device_kernels(device)[k], args.data(), units);
}

std::vector<Tensor> Executable::run(const std::vector<Tensor>& inputs) const {
  const ir::Graph& g = graph_;
  KILN_CHECK(inputs.size() == g.params.size(), "function '{}': expects {} tensor inputs, got {}",
             g.name, g.params.size(), inputs.size());
  for (size_t i = 0; i < inputs.size(); ++i) {
    const TensorType& spec = g.types[static_cast<size_t>(g.params[i])];
    KILN_CHECK(inputs[i].defined() && tracer::fits(spec, inputs[i]),
               "function '{}': input {} is {} but the signature says {}{}", g.name, i,
               inputs[i].defined() ? inputs[i].type_str() : "undefined", name(spec.dtype),
               spec.shape.str());
  }
  // The generated x86 kernels read host memory: a call with tensors on another device
  // (inputs or captured variables) runs the same steps with the kernels as device code.
  Device device = Device::cpu();
  for (const Tensor& t : inputs)
    if (!t.is_symbolic() && !t.device().is_cpu()) device = t.device();
  for (const ir::VariableSlot& slot : g.variables)
    if (slot.var && device.is_cpu()) {
      const Tensor v = slot.var->stored();
      if (v.defined() && !v.is_symbolic()) device = v.device();
    }
  if (!device.is_cpu()) return run_on_device(inputs, device);
  // Subnormals flushed or kept as for the eager kernels (core/float_mode.h), for every step.
  FloatModeScope mode;
  memory::ArenaScope arena(buffers_.arena_bytes);
  std::vector<Tensor> vals(g.types.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    vals[static_cast<size_t>(g.params[i])] = inputs[i];
  using Clock = std::chrono::steady_clock;
  const bool profiling = profile_ns_ != nullptr;
  // The first call's times go to the first half of profile_ns_, the later calls' to the second.
  const size_t profile_base =
      profiling && profile_calls_.fetch_add(1, std::memory_order_relaxed) > 0 ? plan_.steps.size()
                                                                              : 0;
  const bool plain = dispatch_is_plain();
  for (size_t k = 0; k < plan_.steps.size(); ++k) {
    if (step_plans_[k].kind == StepKind::immediate) continue;
    const Clock::time_point start = profiling ? Clock::now() : Clock::time_point();
    // A product and its epilogue run as one: steps k and k + 1.
    const size_t last = product_epilogue_[k] ? k + 1 : k;
    run_step(k, vals, plain);
    for (size_t j = k; j <= last; ++j)
      for (int v : release_after_[j])
        vals[static_cast<size_t>(v)] = Tensor();
    if (profiling)
      profile_ns_[profile_base + last].fetch_add(
          std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - start).count(),
          std::memory_order_relaxed);
    k = last;
  }
  std::vector<Tensor> results;
  results.reserve(g.results.size());
  for (int v : g.results)
    results.push_back(vals[static_cast<size_t>(v)]);
  // Nothing that outlives the call may pin the arena: the plan allocates results and new
  // variable values outside it, and a kernel that handed back an arena buffer anyway (a view
  // the plan did not foresee) gets a copy here.
  if (buffers_.arena_bytes > 0) {
    memory::ArenaScope::Pause outside;
    for (Tensor& r : results)
      if (r.defined() && !r.is_symbolic() && arena.owns(r.raw_data())) r = r.clone();
    for (int index : assigned_slots_) {
      const ir::VariableSlot& slot = g.variables[static_cast<size_t>(index)];
      if (!slot.var) continue;
      const Tensor v = slot.var->stored();
      if (v.defined() && !v.is_symbolic() && arena.owns(v.raw_data())) slot.var->store(v.clone());
    }
  }
  return results;
}

std::vector<Tensor> Executable::run_on_device(const std::vector<Tensor>& inputs,
                                              Device device) const {
  checked_backend(device, "function");
  if (std::optional<std::vector<Tensor>> r = run_graph(inputs, device)) return std::move(*r);
  return run_steps(inputs, device);
}

std::vector<Tensor> Executable::run_steps(const std::vector<Tensor>& inputs, Device device) const {
  const ir::Graph& g = graph_;
  std::vector<Tensor> vals(g.types.size());
  for (size_t i = 0; i < inputs.size(); ++i)
    vals[static_cast<size_t>(g.params[i])] = inputs[i];
  for (size_t k = 0; k < plan_.steps.size(); ++k) {
    const Step& s = plan_.steps[k];
    if (s.group >= 0) {
      run_group(static_cast<size_t>(s.group), vals, device);
    } else {
      const ir::Node& n = g.nodes[static_cast<size_t>(s.node)];
      const OpDef* op = registry().find(n.op);
      if (n.op == "constant") {
        // Uploaded on the first call and kept: no host-to-device copy per call.
        vals[static_cast<size_t>(n.outputs[0])] = device_constant(n, device);
      } else if (op != nullptr && op->has(kCreation) && !op->has(kStateful) &&
                 n.outputs.size() == 1) {
        vals[static_cast<size_t>(n.outputs[0])] = device_created(n, device);
      } else if (op != nullptr && op->has(kStateful) && n.inputs.empty() &&
                 op->kernel(device.type) != nullptr) {
        // A random draw with a device kernel: drawn there, with fresh counters (the CPU's
        // numbers for the same counters).
        Attrs a = random::redraw(*op, {}, n.attrs);
        a.set("device", static_cast<int64_t>(device.index));
        const TensorType type = g.types[static_cast<size_t>(n.outputs[0])];
        vals[static_cast<size_t>(n.outputs[0])] = op->kernel(device.type)({}, a, {&type, 1})[0];
      } else {
        tracer::run_node(g, n, vals, g.variables);
        // Values born on the host (creation ops, which have no input to say where to run):
        // scalars go along with device operands, bigger ones move.
        if (n.inputs.empty())
          for (int v : n.outputs)
            if (vals[static_cast<size_t>(v)].rank() > 0)
              vals[static_cast<size_t>(v)] = vals[static_cast<size_t>(v)].to(device);
      }
    }
    for (int v : release_after_[k])
      vals[static_cast<size_t>(v)] = Tensor();
  }
  std::vector<Tensor> results;
  results.reserve(g.results.size());
  for (int v : g.results)
    results.push_back(vals[static_cast<size_t>(v)]);
  return results;
}

Tensor Executable::device_constant(const ir::Node& n, Device device) const {
  std::lock_guard<std::mutex> lock(device_mu_);
  Tensor& t = device_constants_[{device.index, n.outputs[0]}];
  if (!t.defined()) t = graph_.constants[static_cast<size_t>(n.attrs.i("index"))].to(device);
  return t;
}

Tensor Executable::device_created(const ir::Node& n, Device device) const {
  std::lock_guard<std::mutex> lock(device_mu_);
  Tensor& t = device_created_[{device.index, &n}];
  if (!t.defined()) {
    std::vector<Tensor> vals(graph_.types.size());
    tracer::run_node(graph_, n, vals, graph_.variables);
    t = vals[static_cast<size_t>(n.outputs[0])].to(device);
  }
  return t;
}

const std::vector<void*>& Executable::device_kernels(Device device) const {
  std::lock_guard<std::mutex> lock(device_mu_);
  if (auto it = device_fns_.find(device.index); it != device_fns_.end()) return it->second;
  const DeviceBackend& backend = checked_backend(device, "function");
  KILN_CHECK(backend.arch && backend.load_kernels && backend.launch,
             "function '{}': device {} cannot run generated code", graph_.name, device.str());
  // LLVM 19's NVPTX backend targets up to sm_90; newer GPUs compile sm_90 PTX themselves.
  const int sm = std::min(backend.arch(device.index), 90);
  const cuda::PtxModule m = cuda::emit_ptx(graph_, kernels_, sm);
  if (const char* dir = std::getenv("KILN_DUMP"); dir != nullptr && *dir != '\0')
    dump(dir, graph_.name, fmt::format("sm_{}.ptx", sm), m.ptx);
  std::vector<std::string> names;
  for (const cuda::PtxKernel& k : m.kernels)
    names.push_back(k.name);
  std::vector<void*> fns;
  if (!names.empty()) fns = backend.load_kernels(device.index, m.ptx, names);
  return device_fns_[device.index] = std::move(fns);
}

void set_stream_threshold(int64_t bytes) {
  stream_threshold.store(bytes);
}

std::shared_ptr<const tracer::CompiledGraph> compile(const ir::Graph& g) {
  // Identical graphs (same text, same bound variables) share one Executable.
  std::string key = ir::print(g);
  for (const ir::VariableSlot& slot : g.variables)
    key += fmt::format("|{}", static_cast<const void*>(slot.var.get()));
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<const Executable>> cache;
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it != cache.end())
      if (auto hit = it->second.lock()) return hit;
  }
  auto exe = std::make_shared<const Executable>(g);
  std::lock_guard<std::mutex> lock(mu);
  cache[key] = exe;
  return exe;
}

KILN_STATIC_INIT {
  tracer::set_compiler(&compile);
};

}  // namespace kiln::jit
