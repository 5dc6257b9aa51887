// Column programs: reductions over every axis but the last of a [rows, cols] space (bias
// gradients), with their elementwise producers, the full outputs those compute, short
// contractions dh = dy W^T read by row and column, and row contractions dW = h^T dy summed over
// the rows (fusion.h). See codegen.h for the calling convention: dims = {cols, rows}, and a
// call covers the columns [begin, end).
//
// The kernel takes the columns a block at a time and walks every row for the block, so that
// each reduction's accumulators stay in registers across the rows and are stored once per
// block. On x86 a block is a vector of columns, the program's values vectors of one column per
// lane; the columns left over and NVPTX take one column at a time. (Walking the rows outside
// and the columns inside keeps the accumulators in memory instead: a load and a store per
// row, vector and accumulator, which bound a row contraction's ten sums per column to the
// store port.)

#include <algorithm>
#include <functional>
#include <limits>
#include <map>

#include <kiln/jit/graph_util.h>

#include "emitter.h"

namespace kiln::jit::cpu {

void emit_column_program(Emitter& em, const ir::Graph& g, const KernelPlan& plan,
                         llvm::TargetMachine& tm) {
  llvm::IRBuilder<>& b = em.b;
  llvm::LLVMContext& ctx = em.ctx;
  llvm::Type* i64 = b.getInt64Ty();
  KernelStart start = start_kernel(em, g, plan, tm);
  llvm::Function* fn = start.fn;
  llvm::Value* cols = b.CreateLoad(i64, start.dims);
  llvm::Value* rows = b.CreateLoad(i64, b.CreateConstInBoundsGEP1_64(i64, start.dims, 1));
  const FusionGroup& grp = *plan.group;
  std::map<int, llvm::Value*>& base = start.base;
  const std::map<int, llvm::Value*>& fixed = start.fixed;
  const std::map<int, InputKind>& kind = start.kind;
  auto dtype = [&](int v) { return g.types[static_cast<size_t>(v)].dtype; };
  std::map<int, llvm::Value*> out_ptr;
  std::map<int, size_t> out_index;
  for (size_t o = 0; o < grp.outputs.size(); ++o) {
    out_ptr[grp.outputs[o]] = start.out[o];
    out_index[grp.outputs[o]] = o;
  }
  // Its outputs are fresh buffers (a program never runs in place).
  const AliasScopes alias(ctx, plan.name, grp.outputs.size());
  std::map<int, const ir::Node*> member;
  for (int i : grp.nodes)
    member[g.nodes[static_cast<size_t>(i)].outputs[0]] = &g.nodes[static_cast<size_t>(i)];
  std::vector<const ir::Node*> reductions, products;
  for (int i : grp.nodes) {
    const ir::Node& n = g.nodes[static_cast<size_t>(i)];
    if (n.op.rfind("reduce_", 0) == 0 && out_ptr.count(n.outputs[0])) reductions.push_back(&n);
    if (n.op == "matmul" && !grp.has_row_contraction(i)) products.push_back(&n);
  }
  // Row contractions: P[j, k] = sum over the rows r of H[r, j] D[r, k].
  struct RowContraction {
    int h = -1, d = -1, p = -1;
    int64_t k = 0;
  };
  std::vector<RowContraction> contractions;
  const std::vector<int> definer = grp.row_contractions.empty() ? std::vector<int>() : definers(g);
  for (int i : grp.row_contractions) {
    const ir::Node& n = g.nodes[static_cast<size_t>(i)];
    RowContraction c;
    // H: the input of the transpose that makes H^T.
    c.h = g.nodes[static_cast<size_t>(definer[static_cast<size_t>(n.inputs[0])])].inputs[0];
    c.d = n.inputs[1];
    c.p = n.outputs[0];
    c.k = g.types[static_cast<size_t>(c.d)].shape[1];
    contractions.push_back(c);
  }

  // Columns per block: a vector register's worth of the widest element the program holds.
  unsigned lanes = 0;
  if (tm.getTargetTriple().isX86()) {
    const std::string features = tm.getTargetFeatureString().str();
    const unsigned bits = features.find("+avx512f") != std::string::npos ? 512
                          : features.find("+avx") != std::string::npos   ? 256
                                                                         : 128;
    size_t widest = 1;
    for (const auto& [v, in] : kind)
      widest = std::max(widest, size_of(dtype(v)));
    for (const auto& [v, n] : member)
      widest = std::max(widest, size_of(dtype(v)));
    lanes = bits / 8 / static_cast<unsigned>(widest);
  }

  // The body for the block of columns from j0: `l` columns as vectors (l > 0), or one.
  auto emit_block = [&](llvm::Value* j0, unsigned l) {
    em.lanes = l;
    auto cast_in = [&](DType d, llvm::Value* v) {
      return d == DType::boolean ? b.CreateICmpNE(v, llvm::ConstantInt::get(v->getType(), 0)) : v;
    };
    // The block's elements at `index` (its first column) of a buffer: adjacent.
    auto load_block = [&](DType d, llvm::Value* ptr, llvm::Value* index, llvm::MDNode* scope,
                          llvm::MDNode* noalias) -> llvm::Value* {
      if (!l) return em.load(d, ptr, index, scope, noalias);
      llvm::Type* t = em.storage_type(d);
      llvm::LoadInst* v = b.CreateAlignedLoad(em.vt(t), b.CreateInBoundsGEP(t, ptr, index),
                                              llvm::Align(size_of(d)));
      Emitter::annotate(v, scope, noalias);
      return cast_in(d, v);
    };
    auto store_block = [&](int o, llvm::Value* v, llvm::Value* index) {
      const DType d = dtype(o);
      const size_t k = out_index.at(o);
      if (!l) return em.store(d, v, out_ptr[o], index, alias.out_scope[k], alias.out_noalias[k]);
      llvm::Type* t = em.storage_type(d);
      if (d == DType::boolean) v = b.CreateZExt(v, em.vt(t));
      Emitter::annotate(b.CreateAlignedStore(v, b.CreateInBoundsGEP(t, out_ptr[o], index),
                                             llvm::Align(size_of(d))),
                        alias.out_scope[k], alias.out_noalias[k]);
    };
    auto load_in = [&](int v, llvm::Value* index) {  // one element
      return em.load(dtype(v), base[v], index, alias.in_scope, alias.in_noalias);
    };
    // Per block: the one-element inputs, the per-column inputs, and each short product's rows
    // of B over the block's columns.
    std::map<int, llvm::Value*> per_block;
    for (const auto& [v, x] : fixed)
      per_block[v] = em.splat(x);
    for (const KernelInput& in : plan.inputs)
      if (in.kind == InputKind::column)
        per_block[in.value] =
            load_block(dtype(in.value), base[in.value], j0, alias.in_scope, alias.in_noalias);
    std::map<const ir::Node*, std::vector<llvm::Value*>> b_rows;
    for (const ir::Node* n : products) {
      const int bv = n->inputs[1];
      const int64_t n_cols = g.types[static_cast<size_t>(bv)].shape[1];
      const int64_t k_len = g.types[static_cast<size_t>(bv)].shape[0];
      for (int64_t k = 0; k < k_len; ++k)
        b_rows[n].push_back(load_block(dtype(bv), base[bv], b.CreateAdd(b.getInt64(k * n_cols), j0),
                                       alias.in_scope, alias.in_noalias));
    }
    // The accumulators, carried across the rows: one per reduction, K per row contraction.
    const double inf = std::numeric_limits<double>::infinity();
    std::vector<llvm::Value*> init;
    for (const ir::Node* n : reductions)
      init.push_back(em.fconst(dtype(n->outputs[0]), n->op == "reduce_sum"   ? 0.0
                                                     : n->op == "reduce_max" ? -inf
                                                                             : inf));
    for (const RowContraction& c : contractions)
      for (int64_t k = 0; k < c.k; ++k)
        init.push_back(em.fconst(dtype(c.p), 0.0));
    // Every row for the block; with no rows, each reduction is its identity and each row
    // contraction 0.
    auto row = [&](llvm::Value* r, const std::vector<llvm::Value*>& acc) {
      llvm::Value* row_base = b.CreateMul(r, cols);
      std::map<int, llvm::Value*> memo = per_block;
      for (const KernelInput& in : plan.inputs)
        if (in.kind == InputKind::row) memo[in.value] = em.splat(load_in(in.value, r));
      // A short product's row of A, and a row contraction's row of D: K values of this row.
      std::map<int, std::vector<llvm::Value*>> by_row;
      auto row_of = [&](int a) {
        if (by_row.count(a) != 0) return;
        const int64_t k_len = g.types[static_cast<size_t>(a)].shape[1];
        llvm::Value* a_base = b.CreateMul(r, b.getInt64(k_len));
        for (int64_t k = 0; k < k_len; ++k)
          by_row[a].push_back(em.splat(load_in(a, b.CreateAdd(a_base, b.getInt64(k)))));
      };
      for (const ir::Node* n : products)
        row_of(n->inputs[0]);
      for (const RowContraction& c : contractions)
        row_of(c.d);
      auto fma = [&](llvm::Value* x, llvm::Value* y, llvm::Value* z) {
        return b.CreateIntrinsic(llvm::Intrinsic::fmuladd, {x->getType()}, {x, y, z});
      };
      std::function<llvm::Value*(int)> value = [&](int v) -> llvm::Value* {
        if (auto it = memo.find(v); it != memo.end()) return it->second;
        llvm::Value* x = nullptr;
        const ir::Node* n = member.count(v) != 0 ? member.at(v) : nullptr;
        if (n != nullptr && n->op == "matmul") {
          // K multiply-adds in k order.
          const std::vector<llvm::Value*>& a_row = by_row.at(n->inputs[0]);
          const std::vector<llvm::Value*>& b_row = b_rows.at(n);
          for (size_t k = 0; k < a_row.size(); ++k)
            x = x == nullptr ? b.CreateFMul(a_row[k], b_row[k]) : fma(a_row[k], b_row[k], x);
        } else if (kind.count(v) != 0) {  // a full input (the others are in memo)
          x = load_block(dtype(v), base[v], b.CreateAdd(row_base, j0), alias.in_scope,
                         alias.in_noalias);
        } else {
          std::vector<llvm::Value*> args;
          for (int a : n->inputs)
            args.push_back(value(a));
          x = em.node(g, *n, args);
        }
        return memo[v] = x;
      };
      std::vector<llvm::Value*> next;
      for (size_t i = 0; i < reductions.size(); ++i) {
        const ir::Node* n = reductions[i];
        llvm::Value* x = value(n->inputs[0]);
        next.push_back(n->op == "reduce_sum" ? b.CreateFAdd(acc[i], x)
                                             : b.CreateBinaryIntrinsic(
                                                   n->op == "reduce_max" ? llvm::Intrinsic::maximum
                                                                         : llvm::Intrinsic::minimum,
                                                   acc[i], x));
      }
      for (const RowContraction& c : contractions) {
        llvm::Value* h = value(c.h);
        for (int64_t k = 0; k < c.k; ++k)
          next.push_back(fma(h, by_row.at(c.d)[static_cast<size_t>(k)], acc[next.size()]));
      }
      for (size_t k = 0; k < grp.outputs.size(); ++k)
        if (plan.output_full[k])
          store_block(grp.outputs[k], value(grp.outputs[k]), b.CreateAdd(row_base, j0));
      return next;
    };
    const std::vector<llvm::Value*> sums =
        emit_accumulating_loop(em, fn, rows, init, row, l ? "rows" : "rows1");
    // The block's sums, once: the reductions' over its columns, the row contractions' as P's
    // [cols, K] (column j's K sums adjacent), lane by lane.
    for (size_t i = 0; i < reductions.size(); ++i)
      store_block(reductions[i]->outputs[0], sums[i], j0);
    size_t a = reductions.size();
    for (const RowContraction& c : contractions)
      for (int64_t k = 0; k < c.k; ++k, ++a) {
        const DType d = dtype(c.p);
        const size_t o = out_index.at(c.p);
        for (unsigned lane = 0; lane < std::max(l, 1u); ++lane) {
          llvm::Value* x = l ? b.CreateExtractElement(sums[a], b.getInt32(lane)) : sums[a];
          llvm::Value* j = b.CreateAdd(j0, b.getInt64(lane));
          em.store(d, x, out_ptr[c.p], b.CreateAdd(b.CreateMul(j, b.getInt64(c.k)), b.getInt64(k)),
                   alias.out_scope[o], alias.out_noalias[o]);
        }
      }
    em.lanes = 0;
  };

  emit_lane_loops(em, fn, start.begin, start.end, lanes, emit_block, {"blocks", "cols"});
  b.CreateRetVoid();
}

}  // namespace kiln::jit::cpu
