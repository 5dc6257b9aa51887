// Product epilogues: a large matrix product whose output only one flat elementwise kernel
// reads runs together with that kernel (fusion.h, pair_product_epilogues). A train step
// makes this pattern at every layer: the weight gradient dW = x^T dy feeds the optimizer's
// update of W and nothing else. Run apart, the product is split across the threads by
// oneDNN's own choice and lands in the caches of whichever cores wrote it, and the update
// then splits the elements its own way and reads the gradient back from there or from the
// last-level cache. Run together, each thread computes a block of the product's rows and
// updates the same rows at once, from its own cache (and, done early, the end of another
// thread's rows: run_balanced_epilogue).
#include <algorithm>
#include <atomic>
#include <optional>

#include <kiln/backends/cpu/linalg.h>
#include <kiln/backends/cpu/parallel.h>
#include <kiln/core/arena.h>
#include <kiln/jit/executable.h>
#include <kiln/jit/fusion.h>
#include <kiln/jit/graph_util.h>

namespace kiln::jit {
namespace {

// A 2-D f32 matmul with static shapes and at least kMinEpilogueProductMacs multiply-adds.
bool is_large_product(const ir::Graph& g, const ir::Node& n) {
  if (!is_static_matrix_product(g, n)) return false;
  const TensorType& a = g.types[static_cast<size_t>(n.inputs[0])];
  const TensorType& b = g.types[static_cast<size_t>(n.inputs[1])];
  if (a.dtype != DType::f32 || b.dtype != DType::f32) return false;
  return a.shape[0] * a.shape[1] * b.shape[1] >= kMinEpilogueProductMacs;
}

// Rows of a thread's block that its epilogue claims at a time: ~4K elements, a fraction of a
// microsecond of an optimizer's update, so that a thread that is done early takes over the
// end of another's.
constexpr int64_t kEpilogueChunkElements = 4096;

// One thread's block of product rows: the epilogue's next chunk, and whether the rows exist.
struct alignas(64) EpilogueBlock {
  std::atomic<int64_t> next{0};
  std::atomic<bool> ready{false};
};

// Each thread computes a fixed block of the product's rows (one oneDNN call: its packing of
// the shared operand is paid once per thread) and then runs the kernel over that block in
// chunks, claimed through the block's counter. A thread done with its own chunks claims
// those left in the blocks whose rows are ready. On a shared machine the two halves of a
// ~70 us step differ by several microseconds from call to call (another tenant, a cold
// cache); the waiting at the end then shrinks to about one chunk.
void run_balanced_epilogue(const kiln::cpu::RowBlockProduct& rows, cpu::KernelFn fn,
                           void* const* bufs, const int64_t* dims, float* out, int64_t n,
                           int64_t cols, int threads, std::atomic<bool>& refused) {
  std::vector<EpilogueBlock> blocks(static_cast<size_t>(threads));
  const int64_t chunk = std::max<int64_t>(1, kEpilogueChunkElements / std::max<int64_t>(cols, 1));
#pragma omp parallel num_threads(threads)
  {
    const int64_t id = omp_get_thread_num(), nt = omp_get_num_threads();
    FloatModeScope mode;
    auto drain = [&](int64_t j) {
      const auto [b, e] = kiln::cpu::split_rows(n, nt, j);
      EpilogueBlock& s = blocks[static_cast<size_t>(j)];
      for (;;) {
        const int64_t r0 = b + s.next.fetch_add(1, std::memory_order_relaxed) * chunk;
        if (r0 >= e) return;
        fn(bufs, dims, r0 * cols, std::min(e, r0 + chunk) * cols);
      }
    };
    const auto [b, e] = kiln::cpu::split_rows(n, nt, id);
    if (b < e && !rows.rows(out, b, e)) {
      refused.store(true);
    } else {
      blocks[static_cast<size_t>(id)].ready.store(true, std::memory_order_release);
      drain(id);
      for (int64_t k = 1; k < nt; ++k) {
        const int64_t j = (id + k) % nt;
        if (blocks[static_cast<size_t>(j)].ready.load(std::memory_order_acquire)) drain(j);
      }
    }
  }
}

}  // namespace

int epilogue_threads(int64_t rows, int64_t cols, int64_t depth) {
  // Blocks of at least 2^18 multiply-adds, so that each thread's product stays efficient.
  const int64_t grain =
      std::max<int64_t>(8, (int64_t{1} << 18) / std::max<int64_t>(cols * depth, 1));
  return static_cast<int>(
      std::min<int64_t>(kiln::cpu::num_threads(), std::max<int64_t>(1, rows / grain)));
}

std::vector<bool> pair_product_epilogues(const ir::Graph& g, FusionPlan& plan,
                                         const std::function<bool(int group)>& flat) {
  std::vector<int> paired_nodes, paired_groups;
  auto has = [](const std::vector<int>& xs, int x) {
    return std::find(xs.begin(), xs.end(), x) != xs.end();
  };
  fold_into_sole_readers(g, plan, [&](size_t k, size_t r, int v) {
    const Step s = plan.steps[k];
    if (has(paired_nodes, s.node) || !is_large_product(g, g.nodes[static_cast<size_t>(s.node)]))
      return false;
    const int grp = plan.steps[r].group;
    if (has(paired_groups, grp) || !flat(grp) ||
        plan.groups[static_cast<size_t>(grp)].shape != g.types[static_cast<size_t>(v)].shape)
      return false;
    // Down to just before the kernel: nothing in between reads the product, and its operands
    // were ready where it was.
    plan.steps.erase(plan.steps.begin() + static_cast<std::ptrdiff_t>(k));
    plan.steps.insert(plan.steps.begin() + static_cast<std::ptrdiff_t>(r) - 1, s);
    paired_nodes.push_back(s.node);
    paired_groups.push_back(grp);
    return true;
  });
  std::vector<bool> paired(plan.steps.size(), false);
  for (size_t k = 0; k < plan.steps.size(); ++k) {
    paired[k] = plan.steps[k].node >= 0 && has(paired_nodes, plan.steps[k].node);
    KILN_ASSERT(!paired[k] || (k + 1 < plan.steps.size() && plan.steps[k + 1].group >= 0),
                "pair_product_epilogues: the product at step {} has no kernel after it", k);
  }
  return paired;
}

void Executable::run_product_epilogue(size_t k, std::vector<Tensor>& vals) const {
  const ir::Node& product = graph_.nodes[static_cast<size_t>(plan_.steps[k].node)];
  const auto grp = static_cast<size_t>(plan_.steps[k + 1].group);
  // Each step allocates as the buffer plan simulated it: in the arena unless it says not.
  auto outside = [&](size_t step, std::optional<memory::ArenaScope::Pause>& pause) {
    if (buffers_.outside_arena[step]) pause.emplace();
  };
  const std::optional<kiln::cpu::RowBlockProduct> rows = kiln::cpu::RowBlockProduct::make(
      vals[static_cast<size_t>(product.inputs[0])], vals[static_cast<size_t>(product.inputs[1])]);
  if (!rows) {  // an operand the matmul kernel must copy first: one step after the other
    {
      std::optional<memory::ArenaScope::Pause> pause;
      outside(k, pause);
      tracer::run_node(graph_, product, vals, graph_.variables);
    }
    std::optional<memory::ArenaScope::Pause> pause;
    outside(k + 1, pause);
    run_group(grp, vals, Device::cpu());
    return;
  }
  const TensorType& type = graph_.types[static_cast<size_t>(product.outputs[0])];
  float* out = nullptr;
  {
    std::optional<memory::ArenaScope::Pause> pause;
    outside(k, pause);
    Tensor t = Tensor::empty(type.shape, type.dtype, Device::cpu());
    out = t.mutable_data<float>();
    vals[static_cast<size_t>(product.outputs[0])] = std::move(t);
  }
  Launch l;
  {
    std::optional<memory::ArenaScope::Pause> pause;
    outside(k + 1, pause);
    // Static shapes (pair_product_epilogues' condition): the kernel always fits.
    const bool fits = prepare_group(grp, vals, Device::cpu(), l);
    KILN_ASSERT(fits, "function '{}': kernel {} refused its shapes", graph_.name, grp);
  }
  const int64_t n = type.shape[0], cols = type.shape[1];
  const cpu::KernelFn fn = fns_[grp];
  std::atomic<bool> refused{false};
  const int threads =
      epilogue_threads(n, cols, graph_.types[static_cast<size_t>(product.inputs[0])].shape[1]);
  if (threads <= 1 || omp_in_parallel()) {
    if (!rows->rows(out, 0, n))
      refused.store(true);
    else
      fn(l.bufs.data(), l.dims.data(), 0, n * cols);
  } else {
    run_balanced_epilogue(*rows, fn, l.bufs.data(), l.dims.data(), out, n, cols, threads, refused);
  }
  // dnnl_sgemm refuses only arguments that make() has already checked.
  KILN_ASSERT(!refused.load(), "function '{}': oneDNN refused a {} product's rows", graph_.name,
              type.shape.str());
}

}  // namespace kiln::jit
