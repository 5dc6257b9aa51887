#include <kiln/jit/cpu/codegen.h>

#include <map>
#include <set>

#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/IntrinsicsX86.h>
#include <llvm/IR/MDBuilder.h>
#include <llvm/IR/Module.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>

#include <kiln/core/registry.h>

#include "emitter.h"

namespace kiln::jit::cpu {
namespace {

// ---- what the emitter supports ---------------------------------------------------------------

enum class Kind { float_unary, float_binary, compare, logical, select, cast, copy };

const std::map<std::string, Kind>& supported_ops() {
  static const std::map<std::string, Kind> ops = {
      {"neg", Kind::float_unary},
      {"abs", Kind::float_unary},
      {"square", Kind::float_unary},
      {"sign", Kind::float_unary},
      {"relu", Kind::float_unary},
      {"exp", Kind::float_unary},
      {"log", Kind::float_unary},
      {"log1p", Kind::float_unary},
      {"expm1", Kind::float_unary},
      {"sqrt", Kind::float_unary},
      {"rsqrt", Kind::float_unary},
      {"tanh", Kind::float_unary},
      {"sigmoid", Kind::float_unary},
      {"erf", Kind::float_unary},
      {"sin", Kind::float_unary},
      {"cos", Kind::float_unary},
      {"floor", Kind::float_unary},
      {"ceil", Kind::float_unary},
      {"round", Kind::float_unary},
      {"add", Kind::float_binary},
      {"sub", Kind::float_binary},
      {"mul", Kind::float_binary},
      {"div", Kind::float_binary},
      {"pow", Kind::float_binary},
      {"maximum", Kind::float_binary},
      {"minimum", Kind::float_binary},
      {"equal", Kind::compare},
      {"not_equal", Kind::compare},
      {"less", Kind::compare},
      {"less_equal", Kind::compare},
      {"greater", Kind::compare},
      {"greater_equal", Kind::compare},
      {"logical_not", Kind::logical},
      {"logical_and", Kind::logical},
      {"logical_or", Kind::logical},
      {"select", Kind::select},
      {"cast", Kind::cast},
      {"copy", Kind::copy},
      {"stop_gradient", Kind::copy},
  };
  return ops;
}

bool shape_is_one(const Shape& s) {
  for (int64_t d : s)
    if (d != 1) return false;
  return true;
}

}  // namespace

namespace {
bool can_lower(const ir::Graph& g, const ir::Node& n) {
  auto it = supported_ops().find(n.op);
  if (it == supported_ops().end() || n.outputs.size() != 1) return false;
  const DType out = g.types[static_cast<size_t>(n.outputs[0])].dtype;
  std::vector<DType> in;
  for (int v : n.inputs)
    in.push_back(g.types[static_cast<size_t>(v)].dtype);
  static const std::set<std::string> int_ops = {"neg", "abs", "square",  "sign",   "add",
                                                "sub", "mul", "maximum", "minimum"};
  auto value_type = [](DType d) { return is_float(d) || is_int(d) || d == DType::boolean; };
  switch (it->second) {
    case Kind::float_unary:
    case Kind::float_binary:
      return (is_float(out) || (is_int(out) && int_ops.count(n.op) != 0)) &&
             std::all_of(in.begin(), in.end(), [&](DType d) { return d == out; });
    case Kind::compare:
      return (is_float(in[0]) || is_int(in[0])) && in[1] == in[0] && out == DType::boolean;
    case Kind::logical:
      return out == DType::boolean &&
             std::all_of(in.begin(), in.end(), [](DType d) { return d == DType::boolean; });
    case Kind::select:
      return in[0] == DType::boolean && value_type(out) && in[1] == out && in[2] == out;
    case Kind::cast:
      // Not float -> int: the eager kernel's conversion of out-of-range values is the C++ one.
      return value_type(in[0]) && value_type(out) && !(is_float(in[0]) && is_int(out));
    case Kind::copy:
      return value_type(out);
  }
  return false;
}

bool is_row_reduction(const ir::Graph& g, const ir::Node& n) {
  if (n.op != "reduce_sum" && n.op != "reduce_max" && n.op != "reduce_min") return false;
  const TensorType& in = g.types[static_cast<size_t>(n.inputs[0])];
  const auto& axes = n.attrs.ints("axes");
  return is_float(in.dtype) && in.shape.rank() >= 1 && axes.size() == 1 &&
         axes[0] == in.shape.rank() - 1;
}
}  // namespace

std::vector<std::string> emitted_ops() {
  std::vector<std::string> out;
  for (const auto& [name, kind] : supported_ops())
    out.push_back(name);
  return out;
}

Fusible classify(const ir::Graph& g, const ir::Node& n) {
  if (can_lower(g, n)) return Fusible::elementwise;
  if (is_row_reduction(g, n)) return Fusible::row_reduction;
  if (n.op == "reshape" && n.inputs.size() == 1) {
    const Shape& in = g.types[static_cast<size_t>(n.inputs[0])].shape;
    const Shape& out = g.types[static_cast<size_t>(n.outputs[0])].shape;
    auto plus_one = [](const Shape& a, const Shape& b) {  // a == [b..., 1], b not a scalar
      if (b.rank() == 0 || a.rank() != b.rank() + 1 || a[a.rank() - 1] != 1) return false;
      for (int64_t d = 0; d < b.rank(); ++d)
        if (a[d] != b[d] || b[d] < 0) return false;
      return true;
    };
    if (plus_one(in, out) || plus_one(out, in)) return Fusible::row_view;
  }
  if (n.op == "reduce_sum" || n.op == "reduce_max" || n.op == "reduce_min") {
    // Over every axis but the last: a column reduction.
    const TensorType& in = g.types[static_cast<size_t>(n.inputs[0])];
    const auto& axes = n.attrs.ints("axes");
    bool leading = is_float(in.dtype) && in.shape.rank() >= 2 &&
                   static_cast<int64_t>(axes.size()) == in.shape.rank() - 1;
    for (size_t k = 0; leading && k < axes.size(); ++k)
      leading = axes[k] == static_cast<int64_t>(k);
    if (leading) return Fusible::column_reduction;
  }
  return Fusible::no;
}

KernelPlan plan_kernel(const ir::Graph& g, const FusionGroup& group, std::string name) {
  KernelPlan p;
  p.name = std::move(name);
  p.group = &group;
  p.rank = group.shape.rank();
  p.row_program = group.row_program;
  p.column_program = group.column_program;
  std::vector<int> producer(g.types.size(), -1);
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (int v : g.nodes[i].outputs)
      producer[static_cast<size_t>(v)] = static_cast<int>(i);
  std::vector<bool> from_prologue(g.types.size(), false);
  for (int n : group.prologue)
    for (int v : g.nodes[static_cast<size_t>(n)].outputs)
      from_prologue[static_cast<size_t>(v)] = true;
  std::set<int> operands;
  for (int i : group.nodes)
    if (const ir::Node& n = g.nodes[static_cast<size_t>(i)]; n.op == "matmul") {
      // A row contraction reads D by row; its transposed operand is the program's own H.
      if (group.has_row_contraction(i)) {
        operands.insert(n.inputs[1]);
        p.work_per_element += (g.types[static_cast<size_t>(n.inputs[1])].shape[1] + 7) / 8;
        continue;
      }
      operands.insert(n.inputs.begin(), n.inputs.end());
      p.work_per_element += (g.types[static_cast<size_t>(n.inputs[0])].shape[1] + 7) / 8;
    }
  for (int v : group.inputs) {
    const Shape& s = g.types[static_cast<size_t>(v)].shape;
    KernelInput in{v, InputKind::broadcast, false};
    if (operands.count(v) != 0) {
      in.kind = InputKind::operand;
      p.inputs.push_back(in);
      continue;
    }
    const int prod = producer[static_cast<size_t>(v)];
    const bool one = shape_is_one(s);
    if (from_prologue[static_cast<size_t>(v)] && !one) {
      in.view = true;  // strided: a transpose or slice of an outside value
      p.rows = true;
    } else if (one && prod >= 0 && g.nodes[static_cast<size_t>(prod)].op == "constant") {
      in.kind = InputKind::immediate;
    } else if (one) {
      in.kind = InputKind::scalar;
    } else if (s == group.shape) {
      in.kind = InputKind::full;
    } else if (group.row_program || group.column_program) {
      in.kind = is_column_value(s, group.shape) ? InputKind::column : InputKind::row;
    } else {
      const int64_t last = s.rank() > 0 ? s[s.rank() - 1] : 1;
      in.last_dim_broadcast = last == 1 && group.shape[p.rank - 1] != 1;
      p.rows = true;
    }
    p.inputs.push_back(in);
  }
  if (p.row_program || p.column_program)
    for (int v : group.outputs) {
      // A reduction's result is reduced even where its shape equals the space's (size-1 dims).
      const int prod = producer[static_cast<size_t>(v)];
      const bool reduced = g.nodes[static_cast<size_t>(prod)].op.rfind("reduce_", 0) == 0 ||
                           group.has_row_contraction(prod);
      p.output_full.push_back(!reduced && g.types[static_cast<size_t>(v)].shape == group.shape);
      p.output_per_column.push_back(
          group.has_row_contraction(prod) ? g.types[static_cast<size_t>(v)].shape[1] : 0);
    }
  return p;
}

int64_t dims_size(const KernelPlan& plan) {
  if (plan.row_program) return 1;
  if (plan.column_program) return 2;
  if (!plan.rows) return 0;
  int64_t n = plan.rank;
  for (const KernelInput& in : plan.inputs)
    if (in.kind == InputKind::broadcast) n += plan.rank - 1 + (in.view ? 1 : 0);
  return n;
}

int64_t buffers_size(const KernelPlan& plan) {
  int64_t n = static_cast<int64_t>(plan.group->outputs.size());
  for (const KernelInput& in : plan.inputs)
    n += in.kind != InputKind::immediate;
  return n;
}

AliasScopes::AliasScopes(llvm::LLVMContext& ctx, const std::string& kernel, size_t outputs) {
  llvm::MDBuilder mdb(ctx);
  llvm::MDNode* domain = mdb.createAnonymousAliasScopeDomain(kernel);
  llvm::Metadata* in = mdb.createAnonymousAliasScope(domain, "in");
  std::vector<llvm::Metadata*> outs;
  for (size_t k = 0; k < outputs; ++k)
    outs.push_back(mdb.createAnonymousAliasScope(domain, fmt::format("out{}", k)));
  in_scope = llvm::MDNode::get(ctx, {in});
  in_noalias = llvm::MDNode::get(ctx, outs);
  for (size_t k = 0; k < outputs; ++k) {
    out_scope.push_back(llvm::MDNode::get(ctx, {outs[k]}));
    std::vector<llvm::Metadata*> others = {in};
    for (size_t j = 0; j < outputs; ++j)
      if (j != k) others.push_back(outs[j]);
    out_noalias.push_back(llvm::MDNode::get(ctx, others));
  }
}

std::vector<llvm::Value*> emit_accumulating_loop(Emitter& em, llvm::Function* fn, llvm::Value* n,
                                                 const std::vector<llvm::Value*>& init,
                                                 const LoopStep& step, const std::string& name) {
  llvm::IRBuilder<>& b = em.b;
  llvm::BasicBlock* pre = b.GetInsertBlock();
  auto* loop = llvm::BasicBlock::Create(em.ctx, name, fn);
  auto* after = llvm::BasicBlock::Create(em.ctx, name + ".end", fn);
  b.CreateCondBr(b.CreateICmpSGT(n, b.getInt64(0)), loop, after);
  b.SetInsertPoint(loop);
  llvm::PHINode* i = b.CreatePHI(b.getInt64Ty(), 2);
  i->addIncoming(b.getInt64(0), pre);
  std::vector<llvm::PHINode*> acc;
  std::vector<llvm::Value*> acc_values;
  for (llvm::Value* v : init) {
    acc.push_back(b.CreatePHI(v->getType(), 2));
    acc.back()->addIncoming(v, pre);
    acc_values.push_back(acc.back());
  }
  const std::vector<llvm::Value*> next = step(i, acc_values);
  llvm::Value* in = b.CreateAdd(i, b.getInt64(1), "", true, true);
  llvm::BasicBlock* latch = b.GetInsertBlock();
  i->addIncoming(in, latch);
  for (size_t k = 0; k < acc.size(); ++k)
    acc[k]->addIncoming(next[k], latch);
  b.CreateCondBr(b.CreateICmpSLT(in, n), loop, after);
  b.SetInsertPoint(after);
  std::vector<llvm::Value*> out;
  for (size_t k = 0; k < acc.size(); ++k) {
    llvm::PHINode* r = b.CreatePHI(init[k]->getType(), 2);
    r->addIncoming(init[k], pre);
    r->addIncoming(next[k], latch);
    out.push_back(r);
  }
  return out;
}

void emit_lane_loops(Emitter& em, llvm::Function* fn, llvm::Value* begin, llvm::Value* end,
                     unsigned lanes, const std::function<void(llvm::Value* i, unsigned l)>& body,
                     std::pair<const char*, const char*> names) {
  llvm::IRBuilder<>& b = em.b;
  // A loop over [from, to) by l (one for 0), ending at `after`.
  auto loop = [&](llvm::Value* from, llvm::Value* to, unsigned l, llvm::BasicBlock* after) {
    llvm::BasicBlock* pre = b.GetInsertBlock();
    auto* head = llvm::BasicBlock::Create(em.ctx, l ? names.first : names.second, fn);
    b.CreateCondBr(b.CreateICmpSLT(from, to), head, after);
    b.SetInsertPoint(head);
    llvm::PHINode* i = b.CreatePHI(b.getInt64Ty(), 2);
    i->addIncoming(from, pre);
    body(i, l);
    llvm::Value* next = b.CreateAdd(i, b.getInt64(l ? l : 1), "", true, true);
    i->addIncoming(next, b.GetInsertBlock());
    b.CreateCondBr(b.CreateICmpSLT(next, to), head, after);
    b.SetInsertPoint(after);
  };
  if (lanes > 1) {
    llvm::Value* n = b.CreateSub(end, begin);
    llvm::Value* lane_end =
        b.CreateAdd(begin, b.CreateMul(b.CreateSDiv(n, b.getInt64(lanes)), b.getInt64(lanes)));
    loop(begin, lane_end, lanes, llvm::BasicBlock::Create(em.ctx, "rest", fn));
    begin = lane_end;
  }
  loop(begin, end, 0, llvm::BasicBlock::Create(em.ctx, "done", fn));
}

KernelStart start_kernel(Emitter& em, const ir::Graph& g, const KernelPlan& plan,
                         llvm::TargetMachine& tm) {
  llvm::IRBuilder<>& b = em.b;
  llvm::Type* i64 = b.getInt64Ty();
  llvm::Type* ptr = b.getPtrTy();
  KernelStart k;
  auto* fty = llvm::FunctionType::get(b.getVoidTy(), {ptr, ptr, i64, i64}, false);
  k.fn = llvm::Function::Create(fty, llvm::Function::ExternalLinkage, plan.name, em.mod);
  k.fn->addFnAttr("target-cpu", tm.getTargetCPU());
  k.fn->addFnAttr("target-features", tm.getTargetFeatureString());
  k.fn->addFnAttr(llvm::Attribute::NoUnwind);
  llvm::Value* bufs = k.fn->getArg(0);
  k.dims = k.fn->getArg(1);
  k.begin = k.fn->getArg(2);
  k.end = k.fn->getArg(3);
  b.SetInsertPoint(llvm::BasicBlock::Create(em.ctx, "entry", k.fn));
  int slot = 0;
  auto next_ptr = [&] {
    return b.CreateLoad(ptr,
                        b.CreateConstInBoundsGEP1_64(ptr, bufs, static_cast<uint64_t>(slot++)));
  };
  for (const KernelInput& in : plan.inputs) {
    k.kind[in.value] = in.kind;
    if (in.kind == InputKind::immediate) {
      for (const ir::Node& n : g.nodes)
        if (n.op == "constant" && n.outputs[0] == in.value)
          k.fixed[in.value] = em.constant(g.constants[static_cast<size_t>(n.attrs.i("index"))]);
      continue;
    }
    k.base[in.value] = next_ptr();
    if (in.kind == InputKind::scalar)
      k.fixed[in.value] =
          em.load(g.types[static_cast<size_t>(in.value)].dtype, k.base[in.value], b.getInt64(0));
  }
  for (size_t o = 0; o < plan.group->outputs.size(); ++o)
    k.out.push_back(next_ptr());
  return k;
}

bool can_stream(const ir::Graph& g, const KernelPlan& plan) {
  if (plan.rows || plan.row_program || plan.column_program) return false;
  const size_t size = size_of(g.types[static_cast<size_t>(plan.group->outputs[0])].dtype);
  for (int o : plan.group->outputs)
    if (size_of(g.types[static_cast<size_t>(o)].dtype) != size) return false;
  return size == 4 || size == 8;
}

void emit_kernel(Emitter& em, const ir::Graph& g, const KernelPlan& plan, llvm::TargetMachine& tm,
                 bool stream) {
  llvm::IRBuilder<>& b = em.b;
  llvm::LLVMContext& ctx = em.ctx;
  llvm::Type* i64 = b.getInt64Ty();
  KernelStart start = start_kernel(em, g, plan, tm);
  llvm::Function* fn = start.fn;
  llvm::Value* dims = start.dims;
  const FusionGroup& grp = *plan.group;
  std::map<int, llvm::Value*>& base = start.base;
  const std::map<int, llvm::Value*>& value = start.fixed;
  // Where the loops store: the output buffers, or for an in-place call the inputs' own
  // pointers (the same SSA values the loads use, so the vectorizer sees a distance-0
  // dependence instead of overlapping pointers that would send it to its scalar loop).
  std::vector<llvm::Value*> out_ptrs = start.out;

  // Outside an in-place loop every output is a fresh buffer: scoped alias metadata says so
  // (the inputs share one scope, each output has its own), and the vectorizer then needs no
  // run-time overlap checks and no scalar fallback loop. The in-place loop stores through the
  // inputs' own pointers and has none.
  const AliasScopes alias(ctx, plan.name, start.out.size());
  bool scoped = false;

  // The body at one element: `flat` indexes full inputs and outputs; `bcast(k)` indexes the
  // k-th broadcast input.
  auto body = [&](llvm::Value* flat, const std::map<int, llvm::Value*>& bcast_index) {
    std::map<int, llvm::Value*> v = value;
    llvm::MDNode* ls = scoped ? alias.in_scope : nullptr;
    llvm::MDNode* ln = scoped ? alias.in_noalias : nullptr;
    for (const KernelInput& in : plan.inputs) {
      const DType d = g.types[static_cast<size_t>(in.value)].dtype;
      if (in.kind == InputKind::full) v[in.value] = em.load(d, base[in.value], flat, ls, ln);
      if (in.kind == InputKind::broadcast)
        v[in.value] = em.load(d, base[in.value], bcast_index.at(in.value), ls, ln);
    }
    for (int i : grp.nodes) {
      const ir::Node& n = g.nodes[static_cast<size_t>(i)];
      std::vector<llvm::Value*> args;
      for (int x : n.inputs)
        args.push_back(v.at(x));
      v[n.outputs[0]] = em.node(g, n, args);
    }
    for (size_t k = 0; k < grp.outputs.size(); ++k) {
      const int o = grp.outputs[k];
      if (scoped)
        em.store(g.types[static_cast<size_t>(o)].dtype, v.at(o), out_ptrs[k], flat,
                 alias.out_scope[k], alias.out_noalias[k]);
      else
        em.store(g.types[static_cast<size_t>(o)].dtype, v.at(o), out_ptrs[k], flat);
    }
  };

  auto* exit = llvm::BasicBlock::Create(ctx, "exit", fn);
  // `loop_md`: the loop's !llvm.loop metadata (null: none).
  auto counted_loop = [&](llvm::Value* from, llvm::Value* to, const char* name,
                          const std::function<void(llvm::Value*)>& inner,
                          llvm::MDNode* loop_md = nullptr, int64_t step = 1) {
    llvm::BasicBlock* pre = b.GetInsertBlock();
    auto* loop = llvm::BasicBlock::Create(ctx, name, fn);
    auto* after = llvm::BasicBlock::Create(ctx, std::string(name) + ".end", fn);
    b.CreateCondBr(b.CreateICmpSLT(from, to), loop, after);
    b.SetInsertPoint(loop);
    llvm::PHINode* i = b.CreatePHI(i64, 2, std::string(name) + ".i");
    i->addIncoming(from, pre);
    inner(i);
    llvm::Value* next = b.CreateAdd(i, b.getInt64(step), "", true, true);
    i->addIncoming(next, b.GetInsertBlock());
    llvm::BranchInst* latch = b.CreateCondBr(b.CreateICmpSLT(next, to), loop, after);
    if (loop_md) latch->setMetadata(llvm::LLVMContext::MD_loop, loop_md);
    b.SetInsertPoint(after);
  };

  auto emit_loops = [&] {
    if (!plan.rows) {
      counted_loop(start.begin, start.end, "elem", [&](llvm::Value* i) { body(i, {}); });
    } else {
      const int64_t r = plan.rank;
      auto dim = [&](int64_t k) {
        return b.CreateLoad(i64, b.CreateConstInBoundsGEP1_64(i64, dims, static_cast<uint64_t>(k)));
      };
      llvm::Value* cols = dim(0);
      std::vector<llvm::Value*> outer;
      for (int64_t d = 0; d < r - 1; ++d)
        outer.push_back(dim(1 + d));
      std::map<int, std::vector<llvm::Value*>> strides;
      std::map<int, llvm::Value*> col_stride;  // views: the last dim's stride
      int64_t at = r;
      for (const KernelInput& in : plan.inputs)
        if (in.kind == InputKind::broadcast)
          for (int64_t d = 0; d < r - 1; ++d)
            strides[in.value].push_back(dim(at++));
      for (const KernelInput& in : plan.inputs)
        if (in.kind == InputKind::broadcast && in.view) col_stride[in.value] = dim(at++);
      // Row `row`, columns [j0, j1).
      auto one_row = [&](llvm::Value* row, llvm::Value* j0, llvm::Value* j1) {
        // The row's index over the outer dims, innermost first, and each input's offset.
        std::map<int, llvm::Value*> offset;
        for (const KernelInput& in : plan.inputs)
          if (in.kind == InputKind::broadcast) offset[in.value] = b.getInt64(0);
        llvm::Value* rem = row;
        for (int64_t d = r - 2; d >= 0; --d) {
          llvm::Value* idx = d == 0 ? rem : b.CreateURem(rem, outer[static_cast<size_t>(d)]);
          if (d > 0) rem = b.CreateUDiv(rem, outer[static_cast<size_t>(d)]);
          for (auto& [v, off] : offset)
            off = b.CreateAdd(off, b.CreateMul(idx, strides.at(v)[static_cast<size_t>(d)]));
        }
        llvm::Value* row_base = b.CreateMul(row, cols);
        counted_loop(j0, j1, "col", [&](llvm::Value* j) {
          std::map<int, llvm::Value*> index;
          for (const KernelInput& in : plan.inputs)
            if (in.kind == InputKind::broadcast)
              index[in.value] =
                  in.view ? b.CreateAdd(offset[in.value], b.CreateMul(j, col_stride.at(in.value)))
                  : in.last_dim_broadcast ? offset[in.value]
                                          : b.CreateAdd(offset[in.value], j);
          body(b.CreateAdd(row_base, j), index);
        });
      };
      auto plain = [&] {
        counted_loop(start.begin, start.end, "row",
                     [&](llvm::Value* row) { one_row(row, b.getInt64(0), cols); });
      };
      if (col_stride.empty()) return plain();
      // A view read across its last dim's stride (a transpose): row after row, each output
      // row would touch one cache line (and one page) per column. Tiles of kTileRows rows by
      // kTileCols columns read each input line once while it is cached. Few columns: with
      // a power-of-two stride the columns' lines fall in one cache set (f32 [4096, 1024]
      // transposed: 32 x 64 tiles 10.5 ms, 256 x 8 tiles 4.1 ms; [1000, 3000] 3.0 -> 2.9 ms).
      constexpr int64_t kTileRows = 256, kTileCols = 8;
      llvm::Value* strided = b.getFalse();
      for (const auto& [v, cs] : col_stride)
        strided = b.CreateOr(strided, b.CreateICmpNE(cs, b.getInt64(1)));
      auto* tiled = llvm::BasicBlock::Create(ctx, "tiled", fn);
      auto* rowwise = llvm::BasicBlock::Create(ctx, "rowwise", fn);
      auto* done = llvm::BasicBlock::Create(ctx, "rows.done", fn);
      b.CreateCondBr(strided, tiled, rowwise);
      b.SetInsertPoint(rowwise);
      plain();
      b.CreateBr(done);
      b.SetInsertPoint(tiled);
      auto min = [&](llvm::Value* x, llvm::Value* y) {
        return b.CreateSelect(b.CreateICmpSLT(x, y), x, y);
      };
      counted_loop(
          start.begin, start.end, "rtile",
          [&](llvm::Value* r0) {
            llvm::Value* r1 = min(b.CreateAdd(r0, b.getInt64(kTileRows)), start.end);
            counted_loop(
                b.getInt64(0), cols, "ctile",
                [&](llvm::Value* c0) {
                  llvm::Value* c1 = min(b.CreateAdd(c0, b.getInt64(kTileCols)), cols);
                  counted_loop(r0, r1, "trow", [&](llvm::Value* row) { one_row(row, c0, c1); });
                },
                nullptr, kTileCols);
          },
          nullptr, kTileRows);
      b.CreateBr(done);
      b.SetInsertPoint(done);
    }
  };
  if (stream) {
    // The executable calls this entry with 64-byte aligned outputs. A scalar loop (neither
    // vectorized nor unrolled) runs up to the first element that starts a 64-byte line; from
    // there the vectorizer's loop stores whole vectors at multiples of their size, which
    // mark_streaming_stores then makes aligned and non-temporal. The fence orders those
    // weakly ordered stores before the caller's join.
    KILN_ASSERT(!plan.rows && plan.in_place.empty(), "jit: a streaming entry for '{}'", plan.name);
    scoped = true;
    const auto size =
        static_cast<int64_t>(size_of(g.types[static_cast<size_t>(grp.outputs[0])].dtype));
    const int64_t line = 64 / size;
    llvm::Value* aligned =
        b.CreateAnd(b.CreateAdd(start.begin, b.getInt64(line - 1)), b.getInt64(-line));
    llvm::Value* head_end = b.CreateSelect(b.CreateICmpSLT(aligned, start.end), aligned, start.end);
    llvm::Metadata* no_vec[] = {llvm::MDString::get(ctx, "llvm.loop.vectorize.enable"),
                                llvm::ConstantAsMetadata::get(b.getFalse())};
    llvm::Metadata* no_unroll[] = {llvm::MDString::get(ctx, "llvm.loop.unroll.disable")};
    llvm::MDNode* scalar_loop = llvm::MDNode::getDistinct(
        ctx, {nullptr, llvm::MDNode::get(ctx, no_vec), llvm::MDNode::get(ctx, no_unroll)});
    scalar_loop->replaceOperandWith(0, scalar_loop);
    counted_loop(
        start.begin, head_end, "head", [&](llvm::Value* i) { body(i, {}); }, scalar_loop);
    counted_loop(head_end, start.end, "elem", [&](llvm::Value* i) { body(i, {}); });
    b.CreateCall(llvm::Intrinsic::getDeclaration(&em.mod, llvm::Intrinsic::x86_sse_sfence));
  } else if (plan.in_place.empty()) {
    scoped = true;
    emit_loops();
  } else {
    // Two versions: every planned output written over its input, or none.
    llvm::Value* same = b.getTrue();
    for (const auto& [k, v] : plan.in_place)
      same = b.CreateAnd(same, b.CreateICmpEQ(start.out[k], base.at(v)));
    auto* in_place = llvm::BasicBlock::Create(ctx, "in_place", fn);
    auto* separate = llvm::BasicBlock::Create(ctx, "separate", fn);
    b.CreateCondBr(same, in_place, separate);
    b.SetInsertPoint(in_place);
    for (const auto& [k, v] : plan.in_place)
      out_ptrs[k] = base.at(v);
    emit_loops();
    b.CreateBr(exit);
    b.SetInsertPoint(separate);
    out_ptrs = start.out;
    scoped = true;
    emit_loops();
  }
  b.CreateBr(exit);
  b.SetInsertPoint(exit);
  b.CreateRetVoid();
}

}  // namespace kiln::jit::cpu
