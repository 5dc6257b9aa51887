// Row programs: last-axis reductions with their producers and consumers (column programs are
// in column_program.cpp). See codegen.h for their calling convention.

#include <functional>
#include <limits>
#include <map>

#include "emitter.h"

namespace kiln::jit::cpu {
namespace {

// Row programs over rows of at most kMaxLaneRowLength elements (known when compiling) run
// kRowLanes rows at a time, one row per vector lane (emit_row_program).
constexpr unsigned kRowLanes = 8;
constexpr int64_t kMaxLaneRowLength = 32;

}  // namespace

void emit_row_program(Emitter& em, const ir::Graph& g, const KernelPlan& plan,
                      llvm::TargetMachine& tm) {
  llvm::IRBuilder<>& b = em.b;
  llvm::Type* i64 = b.getInt64Ty();
  KernelStart start = start_kernel(em, g, plan, tm);
  llvm::Function* fn = start.fn;
  const FusionGroup& grp = *plan.group;
  // A row length known when compiling is a constant, so LLVM can unroll short rows and
  // vectorize across them (a [128, 10] softmax would otherwise run its scalar remainders).
  const int64_t known_cols = grp.shape.rank() > 0 ? grp.shape[grp.shape.rank() - 1] : -1;
  llvm::Value* cols = known_cols >= 0 ? static_cast<llvm::Value*>(b.getInt64(known_cols))
                                      : b.CreateLoad(i64, start.dims);
  std::map<int, llvm::Value*>& base = start.base;
  const std::map<int, llvm::Value*>& fixed = start.fixed;
  const std::map<int, InputKind>& kind = start.kind;
  const std::vector<llvm::Value*>& out_ptrs = start.out;
  std::map<int, const ir::Node*> member;
  for (int i : grp.nodes)
    member[g.nodes[static_cast<size_t>(i)].outputs[0]] = &g.nodes[static_cast<size_t>(i)];
  auto is_full = [&](int v) { return g.types[static_cast<size_t>(v)].shape == grp.shape; };
  auto dtype = [&](int v) { return g.types[static_cast<size_t>(v)].dtype; };

  // A loop over the columns [0, cols) with accumulators carried across it.
  auto column_loop = [&](const std::vector<llvm::Value*>& init, const LoopStep& step) {
    return emit_accumulating_loop(em, fn, cols, init, step, "col");
  };

  // A reduction's operand that a full output is computed from (softmax's exp(x - max)) is
  // kept in that output's row as the reduction's loop computes it, and read back by the final
  // loop instead of computed again: the output's own buffer is the scratch row, and each
  // element is read before it is overwritten at the same index.
  std::function<bool(int, int)> depends = [&](int v, int on) {
    if (v == on) return true;
    auto it = member.find(v);
    if (it == member.end()) return false;
    for (int x : it->second->inputs)
      if (depends(x, on)) return true;
    return false;
  };
  int cached = -1;        // the value kept
  size_t cache_slot = 0;  // in this output's buffer
  for (int i : grp.nodes) {
    const ir::Node& n = g.nodes[static_cast<size_t>(i)];
    if (n.op.rfind("reduce_", 0) != 0) continue;
    const int e = n.inputs[0];
    if (!member.count(e) || !is_full(e) || !is_float(dtype(e))) continue;
    for (size_t k = 0; k < grp.outputs.size(); ++k)
      if (plan.output_full[k] && dtype(grp.outputs[k]) == dtype(e) && depends(grp.outputs[k], e) &&
          grp.outputs[k] != e) {
        cached = e;
        cache_slot = k;
        break;
      }
  }

  // The body for the rows from `row`: one row, or with lanes one row per lane (rows row to
  // row + lanes - 1). Memory is read and written here, where the lanes' rows are known; the
  // values in between are the emitter's (vectors in the lane loop).
  auto emit_rows = [&](llvm::Value* row, unsigned lanes) {
    em.lanes = lanes;
    llvm::Value* row_base = b.CreateMul(row, cols);
    auto align = [&](DType d) { return llvm::Align(size_of(d)); };
    // Element j of each lane's row (full tensors): with lanes, one scalar access per lane at
    // a constant distance (the row length is known), which x86 does better than a gather of
    // 64-bit indices.
    auto lane_ptr = [&](DType d, llvm::Value* ptr, llvm::Value* j, unsigned l) {
      llvm::Type* t = em.storage_type(d);
      return b.CreateConstInBoundsGEP1_64(t, b.CreateInBoundsGEP(t, ptr, b.CreateAdd(row_base, j)),
                                          l * static_cast<uint64_t>(known_cols));
    };
    auto load_full = [&](DType d, llvm::Value* ptr, llvm::Value* j) -> llvm::Value* {
      if (!lanes) return em.load(d, ptr, b.CreateAdd(row_base, j));
      llvm::Type* t = em.storage_type(d);
      llvm::Value* v = llvm::PoisonValue::get(em.vt(t));
      for (unsigned l = 0; l < lanes; ++l)
        v = b.CreateInsertElement(v, b.CreateAlignedLoad(t, lane_ptr(d, ptr, j, l), align(d)),
                                  b.getInt32(l));
      return d == DType::boolean ? b.CreateICmpNE(v, llvm::ConstantInt::get(v->getType(), 0)) : v;
    };
    auto store_full = [&](DType d, llvm::Value* v, llvm::Value* ptr, llvm::Value* j) {
      if (!lanes) return em.store(d, v, ptr, b.CreateAdd(row_base, j));
      llvm::Type* t = em.storage_type(d);
      if (d == DType::boolean) v = b.CreateZExt(v, em.vt(t));
      for (unsigned l = 0; l < lanes; ++l)
        b.CreateAlignedStore(b.CreateExtractElement(v, b.getInt32(l)), lane_ptr(d, ptr, j, l),
                             align(d));
    };
    // One value per row (per-row inputs and outputs): the lanes' rows are adjacent.
    auto load_row = [&](DType d, llvm::Value* ptr) -> llvm::Value* {
      if (!lanes) return em.load(d, ptr, row);
      llvm::Type* t = em.storage_type(d);
      llvm::Value* v = b.CreateAlignedLoad(em.vt(t), b.CreateInBoundsGEP(t, ptr, row), align(d));
      return d == DType::boolean ? b.CreateICmpNE(v, llvm::ConstantInt::get(v->getType(), 0)) : v;
    };
    auto store_row = [&](DType d, llvm::Value* v, llvm::Value* ptr) {
      if (!lanes) return em.store(d, v, ptr, row);
      llvm::Type* t = em.storage_type(d);
      if (d == DType::boolean) v = b.CreateZExt(v, em.vt(t));
      b.CreateAlignedStore(v, b.CreateInBoundsGEP(t, ptr, row), align(d));
    };

    std::map<int, llvm::Value*> per_row;  // per-row values computed so far
    for (const auto& [v, x] : fixed)
      per_row[v] = em.splat(x);
    for (const KernelInput& in : plan.inputs)
      if (in.kind == InputKind::row) per_row[in.value] = load_row(dtype(in.value), base[in.value]);

    // The elemental value of v at column j (memo: this loop body's values).
    std::function<llvm::Value*(int, llvm::Value*, std::map<int, llvm::Value*>&)> full_value =
        [&](int v, llvm::Value* j, std::map<int, llvm::Value*>& memo) -> llvm::Value* {
      if (auto it = per_row.find(v); it != per_row.end()) return it->second;
      if (auto it = memo.find(v); it != memo.end()) return it->second;
      llvm::Value* r = nullptr;
      if (auto k = kind.find(v); k != kind.end()) {
        r = k->second == InputKind::full ? load_full(dtype(v), base[v], j)
                                         : em.splat(em.load(dtype(v), base[v], j));
      } else {
        const ir::Node& n = *member.at(v);
        std::vector<llvm::Value*> args;
        for (int x : n.inputs)
          args.push_back(full_value(x, j, memo));
        r = em.node(g, n, args);
      }
      return memo[v] = r;
    };

    for (int i : grp.nodes) {
      const ir::Node& n = g.nodes[static_cast<size_t>(i)];
      const int out = n.outputs[0];
      const bool reduction = n.op == "reduce_sum" || n.op == "reduce_max" || n.op == "reduce_min";
      if (!reduction && is_full(out)) continue;  // computed inside the loops that need it
      if (reduction) {
        const DType d = dtype(n.inputs[0]);
        const double inf = std::numeric_limits<double>::infinity();
        llvm::Value* init = em.fconst(d, n.op == "reduce_sum"   ? 0.0
                                         : n.op == "reduce_max" ? -inf
                                                                : inf);
        per_row[out] =
            column_loop({init}, [&](llvm::Value* j, const std::vector<llvm::Value*>& acc) {
              std::map<int, llvm::Value*> memo;
              llvm::Value* x = full_value(n.inputs[0], j, memo);
              if (n.inputs[0] == cached) store_full(dtype(cached), x, out_ptrs[cache_slot], j);
              if (n.op == "reduce_sum") {
                // Reassociation lets the vectorizer keep one partial sum per lane (as the eager
                // kernel's lanes do); the order of additions differs from a serial loop.
                llvm::IRBuilder<>::FastMathFlagGuard guard(b);
                llvm::FastMathFlags fmf;
                fmf.setAllowReassoc();
                b.setFastMathFlags(fmf);
                return std::vector<llvm::Value*>{b.CreateFAdd(acc[0], x)};
              }
              return std::vector<llvm::Value*>{b.CreateBinaryIntrinsic(
                  n.op == "reduce_max" ? llvm::Intrinsic::maximum : llvm::Intrinsic::minimum,
                  acc[0], x)};
            })[0];
      } else {
        std::vector<llvm::Value*> args;
        for (int x : n.inputs)
          args.push_back(per_row.at(x));
        per_row[out] = em.node(g, n, args);
      }
    }
    // The full outputs, then the per-row ones.
    bool any_full = false;
    for (size_t k = 0; k < grp.outputs.size(); ++k)
      any_full |= plan.output_full[k];
    if (any_full)
      column_loop({}, [&](llvm::Value* j, const std::vector<llvm::Value*>&) {
        std::map<int, llvm::Value*> memo;
        if (cached >= 0) memo[cached] = load_full(dtype(cached), out_ptrs[cache_slot], j);
        for (size_t k = 0; k < grp.outputs.size(); ++k)
          if (plan.output_full[k]) {
            const int o = grp.outputs[k];
            store_full(dtype(o), full_value(o, j, memo), out_ptrs[k], j);
          }
        return std::vector<llvm::Value*>{};
      });
    for (size_t k = 0; k < grp.outputs.size(); ++k)
      if (!plan.output_full[k]) {
        const int o = grp.outputs[k];
        store_row(dtype(o), per_row.at(o), out_ptrs[k]);
      }
    em.lanes = 0;
  };

  llvm::Value* begin = fn->getArg(2);
  llvm::Value* end = fn->getArg(3);
  // Short rows of a known length take kRowLanes rows at a time, one per vector lane: the
  // reductions along a row become lane-wise operations, and the exp or log of a [128, 10]
  // softmax runs 8 rows per instruction instead of one element (the rows left over take
  // the one-row loop). x86 only; NVPTX has no vectors to gain from.
  const bool lane_rows = tm.getTargetTriple().isX86() && known_cols > 0 &&
                         known_cols <= kMaxLaneRowLength && grp.shape.rank() >= 2;
  emit_lane_loops(em, fn, begin, end, lane_rows ? kRowLanes : 0, emit_rows, {"lane_rows", "row"});
  b.CreateRetVoid();
}

}  // namespace kiln::jit::cpu
