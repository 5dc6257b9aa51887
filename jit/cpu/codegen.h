#pragma once

// The x86 code generator's interface (the only jit/cpu/ header; LLVM's headers stay in the
// .cpp files). A fused kernel is an LLVM function over its group's output index space:
//
//   void kernel(void* const* buffers, const int64_t* dims, int64_t begin, int64_t end)
//
// `buffers` holds the data of the group's inputs (those not folded into the code) and then
// of its outputs, all dense. Without broadcast inputs the kernel loops over the flat
// elements [begin, end). Otherwise it loops over rows [begin, end) of the output seen as
// [rows, cols]: dims = {cols, outer dims (rank - 1)..., then per broadcast input its element
// strides over the outer dims (rank - 1)...}; a broadcast input's stride along the last dim is
// 0 or 1, fixed at compile time so that the inner loop vectorizes, except for views made by
// the group's prologue (transposes, slices), whose last-dim strides follow, one per view. A row
// program loops over rows [begin, end) of its row space [rows, cols] with dims = {cols}: per row,
// one loop over the columns for each reduction, then one that writes the full outputs. A column
// program loops over columns [begin, end) with dims = {cols, rows}: it walks every row, keeping its
// accumulators in the output rows, vectorized across the columns. A matmul member of a column
// program (fusion.h, absorb_contractions) reads its operands' buffers at its own indices.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <kiln/jit/fusion.h>

namespace kiln::jit::cpu {

using KernelFn = void (*)(void* const* buffers, const int64_t* dims, int64_t begin, int64_t end);

enum class InputKind {
  full,       // the output's shape: read at the output index
  scalar,     // one element, read once
  broadcast,  // broadcasts into the output along some dims
  immediate,  // a one-element constant folded into the code (no buffer)
  row,        // row programs: one element per row
  column,     // row programs: one element per column
  operand,    // column programs: an operand of a small matmul member, [M, K] or [K, N], dense
};

struct KernelInput {
  int value = -1;
  InputKind kind = InputKind::full;
  bool last_dim_broadcast = false;  // broadcast inputs: stride 0 along the last dim
  // A view made by the group's prologue: read through its strides, the last dim's included
  // (passed at run time; the vectorizer versions the loop for a unit stride).
  bool view = false;
};

struct KernelPlan {
  std::string name;
  const FusionGroup* group = nullptr;
  std::vector<KernelInput> inputs;  // one per group input
  bool rows = false;                // some input broadcasts: loop over rows
  int64_t rank = 0;
  bool row_program = false;
  bool column_program = false;
  std::vector<bool> output_full;  // row/column programs: per output, full (else reduced)
  // Column programs: per output, the values per column of a row contraction's [columns, K]
  // (fusion.h, FusionGroup::row_contractions); 0 for the others.
  std::vector<int64_t> output_per_column;
  // Column programs: the work per element relative to an elementwise op, which sizes the
  // columns each thread takes: 1, plus an eighth of the contraction length K of each matmul
  // member (short products and row contractions alike). Its multiply-adds are vector FMAs on
  // operands in registers or L1, far cheaper per element than an elementwise op's loads and
  // stores: [128, 10] x [10, 128] with a relu's mask and a column sum took 2.8 us on one
  // thread of the Zen 5 VM, about one elementwise grain's work, and 3.7 us split over two;
  // with the row contraction h^T dlogits as well it runs on both, and the MLP step took 0.6
  // us longer with it held to one.
  int64_t work_per_element = 1;
  // Elementwise kernels: (output index, input value) pairs the executable may run in place;
  // the kernel has a second loop version for when every one of them does.
  std::vector<std::pair<size_t, int>> in_place;
  // Emit the streaming entry too (can_stream must hold).
  bool stream = false;
};

// How many int64 `dims` a call of this kernel passes (see the ABI above).
int64_t dims_size(const KernelPlan& plan);
// How many data pointers `buffers` holds: the inputs not folded into the code, then outputs.
int64_t buffers_size(const KernelPlan& plan);

// The ops the elemental emitter has code for (for some dtypes: see classify).
std::vector<std::string> emitted_ops();

// What the emitter supports for node n (its op, dtypes and, for reductions, axes).
Fusible classify(const ir::Graph& g, const ir::Node& n);
// Classifies a group's inputs against its iteration space.
KernelPlan plan_kernel(const ir::Graph& g, const FusionGroup& group, std::string name);

// Whether the plan can have a streaming entry (flat elementwise kernels whose outputs share
// one element size of 4 or 8 bytes): the same loop, but its vector stores are non-temporal
// (`movntps`), skipping the read-for-ownership of each output line and leaving the caches to
// the inputs. The executable asks for it (KernelPlan::stream) where the outputs may be larger
// than the last-level cache, and calls it when they are and every output's data is 64-byte
// aligned, which the entry requires.
bool can_stream(const ir::Graph& g, const KernelPlan& plan);

struct CompiledKernels {
  std::vector<KernelFn> fns;         // one per plan
  std::vector<KernelFn> stream_fns;  // one per plan: its streaming entry, or null
  // Keeps the kernels' code loaded: the module's code is unmapped when the last holder goes.
  std::shared_ptr<const void> module;
  std::string llvm_ir;   // the optimized module, when want_text
  std::string assembly;  // its x86 assembly, when want_text
};

// Emits, optimizes (the O3 pipeline for the host CPU) and JIT-compiles the kernels. A module
// is keyed by a hash of its IR text, the host CPU and the LLVM version: a module loaded in this
// process and still held (CompiledKernels::module) is reused, and with KILN_CACHE_DIR set its
// object file is read from (or written to) that directory, so a later process skips the
// compile.
CompiledKernels compile_kernels(const ir::Graph& g, const std::vector<KernelPlan>& plans,
                                bool want_text);

struct KernelCacheStats {
  int64_t compiled = 0;          // modules optimized and compiled to objects
  int64_t loaded_from_disk = 0;  // objects read from KILN_CACHE_DIR
  int64_t reused = 0;            // modules already loaded in this process
  int64_t live = 0;              // modules whose code is loaded now
};
KernelCacheStats kernel_cache_stats();
// Forgets the modules loaded in this process (their code stays mapped while held): tests use it
// to make the next compile go to KILN_CACHE_DIR.
void forget_loaded_kernels();

}  // namespace kiln::jit::cpu
