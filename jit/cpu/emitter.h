#pragma once

// The elemental emitter shared by the kernel kinds and by both targets (internal to jit/;
// includes LLVM's headers): scalar IR for one node at one element, loads and stores by dtype.
// Values live in registers as float, double, or i1 for bool (stored as one byte). The x86
// code generator (codegen.cpp) and the NVPTX one (jit/cuda/ptx.cpp) emit the same functions
// through it; only the target machine, the libm names and the entry differ.

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/Module.h>
#include <llvm/Target/TargetMachine.h>

#include <kiln/jit/cpu/codegen.h>

#include "math.h"

namespace kiln::jit::cpu {

inline bool is_float(DType d) {
  return d == DType::f32 || d == DType::f64;
}
inline bool is_int(DType d) {
  return d == DType::i32 || d == DType::i64;
}

struct Emitter {
  llvm::LLVMContext& ctx;
  llvm::Module& mod;
  llvm::IRBuilder<>& b;
  // Prepended to the C math library's names (expf, log1p, ...): "" on the CPU, where the
  // process's libm resolves them; "__nv_" for NVPTX, where libdevice defines them.
  const char* libm_prefix = "";
  // 0: values are scalars. Otherwise every value is a vector of this many lanes, one element
  // (one row of a row program) per lane; memory is still accessed by the caller, so load and
  // store stay scalar, and the callers gather, splat and scatter.
  unsigned lanes = 0;

  // A register type of the current shape: t, or a vector of t with `lanes` lanes.
  llvm::Type* vt(llvm::Type* t) const {
    return lanes ? static_cast<llvm::Type*>(llvm::FixedVectorType::get(t, lanes)) : t;
  }
  // A scalar as a value of the current shape.
  llvm::Value* splat(llvm::Value* v) { return lanes ? b.CreateVectorSplat(lanes, v) : v; }

  llvm::Type* storage_type(DType d) {
    switch (d) {
      case DType::f32:
        return b.getFloatTy();
      case DType::f64:
        return b.getDoubleTy();
      case DType::i32:
        return b.getInt32Ty();
      case DType::i64:
        return b.getInt64Ty();
      default:
        return b.getInt8Ty();  // bool, stored as one byte
    }
  }
  // Values live in registers as float, double, i32, i64, or i1 for bool.
  // `scope`/`noalias`: scoped alias metadata (null: none), telling the optimizer which
  // buffers this access cannot overlap.
  llvm::Value* load(DType d, llvm::Value* ptr, llvm::Value* index, llvm::MDNode* scope = nullptr,
                    llvm::MDNode* noalias = nullptr) {
    llvm::Type* t = storage_type(d);
    llvm::LoadInst* v = b.CreateLoad(t, b.CreateInBoundsGEP(t, ptr, index));
    annotate(v, scope, noalias);
    return d == DType::boolean ? b.CreateICmpNE(v, b.getInt8(0)) : static_cast<llvm::Value*>(v);
  }
  void store(DType d, llvm::Value* v, llvm::Value* ptr, llvm::Value* index,
             llvm::MDNode* scope = nullptr, llvm::MDNode* noalias = nullptr) {
    llvm::Type* t = storage_type(d);
    if (d == DType::boolean) v = b.CreateZExt(v, t);
    annotate(b.CreateStore(v, b.CreateInBoundsGEP(t, ptr, index)), scope, noalias);
  }
  static void annotate(llvm::Instruction* i, llvm::MDNode* scope, llvm::MDNode* noalias) {
    if (scope) i->setMetadata(llvm::LLVMContext::MD_alias_scope, scope);
    if (noalias) i->setMetadata(llvm::LLVMContext::MD_noalias, noalias);
  }
  llvm::Value* constant(const Tensor& c) {
    switch (c.dtype()) {
      case DType::f32:
        return llvm::ConstantFP::get(vt(b.getFloatTy()), c.item<float>());
      case DType::f64:
        return llvm::ConstantFP::get(vt(b.getDoubleTy()), c.item<double>());
      case DType::i32:
        return llvm::ConstantInt::get(vt(b.getInt32Ty()), static_cast<uint32_t>(c.item<int32_t>()));
      case DType::i64:
        return llvm::ConstantInt::get(vt(b.getInt64Ty()), static_cast<uint64_t>(c.item<int64_t>()));
      default:
        return llvm::ConstantInt::get(vt(b.getInt1Ty()), c.item<bool>() ? 1 : 0);
    }
  }
  // A call of the C math library; with lanes, one call per lane.
  llvm::Value* libm(const char* name, DType d, std::initializer_list<llvm::Value*> args) {
    const std::string fn = libm_prefix + std::string(name) + (d == DType::f32 ? "f" : "");
    llvm::Type* t = storage_type(d);
    std::vector<llvm::Type*> params(args.size(), t);
    llvm::FunctionCallee callee =
        mod.getOrInsertFunction(fn, llvm::FunctionType::get(t, params, false));
    if (!lanes) return b.CreateCall(callee, args);
    llvm::Value* out = llvm::PoisonValue::get(vt(t));
    for (unsigned l = 0; l < lanes; ++l) {
      std::vector<llvm::Value*> lane;
      for (llvm::Value* a : args)
        lane.push_back(b.CreateExtractElement(a, b.getInt32(l)));
      out = b.CreateInsertElement(out, b.CreateCall(callee, lane), b.getInt32(l));
    }
    return out;
  }
  llvm::Value* fconst(DType d, double v) { return llvm::ConstantFP::get(vt(storage_type(d)), v); }

  // Integer arithmetic wraps (two's complement), as the eager kernels do.
  llvm::Value* int_unary(const std::string& op, llvm::Value* x) {
    llvm::Value* zero = llvm::ConstantInt::get(x->getType(), 0);
    if (op == "neg") return b.CreateSub(zero, x);
    if (op == "abs") return b.CreateSelect(b.CreateICmpSLT(x, zero), b.CreateSub(zero, x), x);
    if (op == "square") return b.CreateMul(x, x);
    if (op == "sign")
      return b.CreateSub(b.CreateZExt(b.CreateICmpSGT(x, zero), x->getType()),
                         b.CreateZExt(b.CreateICmpSLT(x, zero), x->getType()));
    KILN_FAIL("jit: no integer emitter for unary op '{}'", op);
  }
  llvm::Value* int_binary(const std::string& op, llvm::Value* x, llvm::Value* y) {
    if (op == "add") return b.CreateAdd(x, y);
    if (op == "sub") return b.CreateSub(x, y);
    if (op == "mul") return b.CreateMul(x, y);
    if (op == "maximum") return b.CreateSelect(b.CreateICmpSGT(x, y), x, y);
    if (op == "minimum") return b.CreateSelect(b.CreateICmpSLT(x, y), x, y);
    if (op == "equal") return b.CreateICmpEQ(x, y);
    if (op == "not_equal") return b.CreateICmpNE(x, y);
    if (op == "less") return b.CreateICmpSLT(x, y);
    if (op == "less_equal") return b.CreateICmpSLE(x, y);
    if (op == "greater") return b.CreateICmpSGT(x, y);
    if (op == "greater_equal") return b.CreateICmpSGE(x, y);
    KILN_FAIL("jit: no integer emitter for binary op '{}'", op);
  }

  llvm::Value* unary(const std::string& op, DType d, llvm::Value* x) {
    if (is_int(d)) return int_unary(op, x);
    const bool f32 = d == DType::f32;
    if (op == "neg") return b.CreateFNeg(x);
    if (op == "abs") return b.CreateUnaryIntrinsic(llvm::Intrinsic::fabs, x);
    if (op == "square") return b.CreateFMul(x, x);
    if (op == "sign") {
      llvm::Value* s = b.CreateFSub(b.CreateUIToFP(b.CreateFCmpOGT(x, fconst(d, 0)), x->getType()),
                                    b.CreateUIToFP(b.CreateFCmpOLT(x, fconst(d, 0)), x->getType()));
      return b.CreateSelect(b.CreateFCmpUNO(x, x), x, s);
    }
    if (op == "relu") return b.CreateSelect(b.CreateFCmpOGT(x, fconst(d, 0)), x, fconst(d, 0));
    if (op == "exp") return f32 ? emit_exp_f32(b, x) : libm("exp", d, {x});
    if (op == "log") return f32 ? emit_log_f32(b, x) : libm("log", d, {x});
    if (op == "tanh") return f32 ? emit_tanh_f32(b, x) : libm("tanh", d, {x});
    if (op == "sigmoid") {
      if (f32) return emit_sigmoid_f32(b, x);
      llvm::Value* e =
          libm("exp", d, {b.CreateFNeg(b.CreateUnaryIntrinsic(llvm::Intrinsic::fabs, x))});
      llvm::Value* den = b.CreateFAdd(fconst(d, 1), e);
      return b.CreateSelect(b.CreateFCmpOGE(x, fconst(d, 0)), b.CreateFDiv(fconst(d, 1), den),
                            b.CreateFDiv(e, den));
    }
    if (op == "erf" && f32) return emit_erf_f32(b, x);
    if (op == "log1p" || op == "expm1" || op == "erf" || op == "sin" || op == "cos")
      return libm(op.c_str(), d, {x});
    if (op == "sqrt") return b.CreateUnaryIntrinsic(llvm::Intrinsic::sqrt, x);
    if (op == "rsqrt")
      return b.CreateFDiv(fconst(d, 1), b.CreateUnaryIntrinsic(llvm::Intrinsic::sqrt, x));
    if (op == "floor") return b.CreateUnaryIntrinsic(llvm::Intrinsic::floor, x);
    if (op == "ceil") return b.CreateUnaryIntrinsic(llvm::Intrinsic::ceil, x);
    if (op == "round") return b.CreateUnaryIntrinsic(llvm::Intrinsic::roundeven, x);
    KILN_FAIL("jit: no emitter for unary op '{}'", op);
  }

  llvm::Value* binary(const std::string& op, DType d, llvm::Value* x, llvm::Value* y) {
    if (is_int(d)) return int_binary(op, x, y);
    if (op == "add") return b.CreateFAdd(x, y);
    if (op == "sub") return b.CreateFSub(x, y);
    if (op == "mul") return b.CreateFMul(x, y);
    if (op == "div") return b.CreateFDiv(x, y);
    if (op == "pow") return libm("pow", d, {x, y});
    if (op == "maximum" || op == "minimum") {
      // NaN if either is NaN, else the larger (smaller), as the eager kernel; only the sign of
      // a zero result may differ (here -0 < +0). Not the eager kernel's form,
      // select(uno(x, y), x + y, select(ogt(x, y), x, y)): LLVM 19's InstCombine folds it,
      // for x = fabs(a) and y = 0, into select(a ugt 0, |a|, 0), which is 0 for a < 0.
      return b.CreateBinaryIntrinsic(
          op == "maximum" ? llvm::Intrinsic::maximum : llvm::Intrinsic::minimum, x, y);
    }
    if (op == "equal") return b.CreateFCmpOEQ(x, y);
    if (op == "not_equal") return b.CreateFCmpUNE(x, y);
    if (op == "less") return b.CreateFCmpOLT(x, y);
    if (op == "less_equal") return b.CreateFCmpOLE(x, y);
    if (op == "greater") return b.CreateFCmpOGT(x, y);
    if (op == "greater_equal") return b.CreateFCmpOGE(x, y);
    if (op == "logical_and") return b.CreateAnd(x, y);
    if (op == "logical_or") return b.CreateOr(x, y);
    KILN_FAIL("jit: no emitter for binary op '{}'", op);
  }

  // One node at the current element, from its inputs' values there.
  llvm::Value* node(const ir::Graph& g, const ir::Node& n, const std::vector<llvm::Value*>& in) {
    const DType out = g.types[static_cast<size_t>(n.outputs[0])].dtype;
    const DType d0 = g.types[static_cast<size_t>(n.inputs[0])].dtype;
    // (A reshape reaches here only inside a row program, as a per-row value: row_view.)
    if (n.op == "copy" || n.op == "stop_gradient" || n.op == "reshape") return in[0];
    if (n.op == "logical_not") return b.CreateNot(in[0]);
    if (n.op == "select") return b.CreateSelect(in[0], in[1], in[2]);
    if (n.op == "cast") {
      if (d0 == out) return in[0];
      llvm::Type* t = vt(storage_type(out));
      if (d0 == DType::boolean)
        return is_float(out) ? b.CreateUIToFP(in[0], t) : b.CreateZExt(in[0], t);
      if (out == DType::boolean)
        return is_float(d0) ? b.CreateFCmpUNE(in[0], fconst(d0, 0))
                            : b.CreateICmpNE(in[0], llvm::ConstantInt::get(in[0]->getType(), 0));
      if (is_int(d0))
        return is_float(out) ? b.CreateSIToFP(in[0], t) : b.CreateSExtOrTrunc(in[0], t);
      return d0 == DType::f32 ? b.CreateFPExt(in[0], vt(b.getDoubleTy()))
                              : b.CreateFPTrunc(in[0], vt(b.getFloatTy()));
    }
    if (in.size() == 1) return unary(n.op, d0, in[0]);
    return binary(n.op, d0, in[0], in[1]);
  }
};

// The start every kernel shares (codegen.cpp): the function (the ABI of codegen.h, tuned for
// the host CPU), its entry block as the insert point, the inputs' data pointers, the values
// that are the same for the whole call (one-element inputs, loaded once, and immediates) and
// the outputs' data pointers.
struct KernelStart {
  llvm::Function* fn = nullptr;
  llvm::Value* dims = nullptr;
  llvm::Value* begin = nullptr;
  llvm::Value* end = nullptr;
  std::map<int, llvm::Value*> base;   // input value -> its data
  std::map<int, llvm::Value*> fixed;  // input value -> its value, when one element
  std::map<int, InputKind> kind;      // input value -> how it is read
  std::vector<llvm::Value*> out;      // per group output, its data
};
KernelStart start_kernel(Emitter& em, const ir::Graph& g, const KernelPlan& plan,
                         llvm::TargetMachine& tm);

// Scoped alias metadata for a kernel whose outputs are fresh buffers, overlapping neither its
// inputs nor each other: the inputs share one scope and each output has its own, so the
// vectorizer needs no run-time overlap checks (nor the scalar loops they guard).
struct AliasScopes {
  llvm::MDNode* in_scope = nullptr;                   // input loads: their scope,
  llvm::MDNode* in_noalias = nullptr;                 // and the outputs they do not overlap
  std::vector<llvm::MDNode*> out_scope, out_noalias;  // per output: its loads and stores
  AliasScopes(llvm::LLVMContext& ctx, const std::string& kernel, size_t outputs);
};

// An elementwise kernel (codegen.cpp). `stream`: the x86 streaming entry (can_stream in
// codegen.h), which assumes 64-byte aligned outputs and ends with a store fence.
void emit_kernel(Emitter& em, const ir::Graph& g, const KernelPlan& plan, llvm::TargetMachine& tm,
                 bool stream = false);
// The reduction kernels: row programs (reductions.cpp) and column programs
// (column_program.cpp).
void emit_row_program(Emitter& em, const ir::Graph& g, const KernelPlan& plan,
                      llvm::TargetMachine& tm);
void emit_column_program(Emitter& em, const ir::Graph& g, const KernelPlan& plan,
                         llvm::TargetMachine& tm);
// Emits loops running body(i, l) over [begin, end) in fn: `lanes` at a time (l = lanes) while
// a whole group of them fits, then one at a time (l = 0); with lanes 0, one at a time
// throughout. The loops' blocks are named `names` (by lanes, one at a time). The builder is
// left after the loops (codegen.cpp).
// Emits a loop over i in [0, n) carrying accumulators (phi nodes) from `init`: step(i, acc)
// emits the body and returns their next values. Returns their values after the loop (init's
// where n <= 0); the builder is left there. Its blocks are `name` and `name`.end.
using LoopStep =
    std::function<std::vector<llvm::Value*>(llvm::Value* i, const std::vector<llvm::Value*>& acc)>;
std::vector<llvm::Value*> emit_accumulating_loop(Emitter& em, llvm::Function* fn, llvm::Value* n,
                                                 const std::vector<llvm::Value*>& init,
                                                 const LoopStep& step, const std::string& name);
void emit_lane_loops(Emitter& em, llvm::Function* fn, llvm::Value* begin, llvm::Value* end,
                     unsigned lanes, const std::function<void(llvm::Value* i, unsigned l)>& body,
                     std::pair<const char*, const char*> names);

}  // namespace kiln::jit::cpu
