#include <kiln/jit/cpu/codegen.h>

#include <limits>
#include <map>
#include <mutex>

#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/Transforms/Utils/Cloning.h>

#include <kiln/core/registry.h>

#include "math.h"

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

bool is_float(DType d) {
  return d == DType::f32 || d == DType::f64;
}

bool shape_is_one(const Shape& s) {
  for (int64_t d : s)
    if (d != 1) return false;
  return true;
}

// ---- the JIT ---------------------------------------------------------------------------------

struct Jit {
  std::unique_ptr<llvm::orc::LLJIT> lljit;
  std::unique_ptr<llvm::TargetMachine> tm;
  std::mutex mu;
  int64_t modules = 0;
};

[[noreturn]] void fail(llvm::Error e, const char* what) {
  throw Error(fmt::format("jit: {}: {}", what, llvm::toString(std::move(e))));
}

template <class T>
T check(llvm::Expected<T> v, const char* what) {
  if (!v) fail(v.takeError(), what);
  return std::move(*v);
}

Jit& jit() {
  static Jit* j = [] {
    llvm::InitializeNativeTarget();
    llvm::InitializeNativeTargetAsmPrinter();
    auto* out = new Jit;  // lives as long as the process: compiled kernels point into it
    auto jtmb = check(llvm::orc::JITTargetMachineBuilder::detectHost(), "detecting the host");
    jtmb.setCodeGenOptLevel(llvm::CodeGenOptLevel::Aggressive);
    out->tm = check(jtmb.createTargetMachine(), "creating the target machine");
    out->lljit =
        check(llvm::orc::LLJITBuilder().setJITTargetMachineBuilder(jtmb).create(), "creating");
    // Kernels call libm (f64 transcendentals) from the host process.
    out->lljit->getMainJITDylib().addGenerator(
        check(llvm::orc::DynamicLibrarySearchGenerator::GetForCurrentProcess(
                  out->lljit->getDataLayout().getGlobalPrefix()),
              "reading the process's symbols"));
    return out;
  }();
  return *j;
}

// ---- the elemental emitter ---------------------------------------------------------------

struct Emitter {
  llvm::LLVMContext& ctx;
  llvm::Module& mod;
  llvm::IRBuilder<>& b;

  llvm::Type* storage_type(DType d) {
    switch (d) {
      case DType::f32:
        return b.getFloatTy();
      case DType::f64:
        return b.getDoubleTy();
      default:
        return b.getInt8Ty();  // bool, stored as one byte
    }
  }
  // Values live in registers as float, double, or i1 for bool.
  llvm::Value* load(DType d, llvm::Value* ptr, llvm::Value* index) {
    llvm::Type* t = storage_type(d);
    llvm::Value* v = b.CreateLoad(t, b.CreateInBoundsGEP(t, ptr, index));
    return d == DType::boolean ? b.CreateICmpNE(v, b.getInt8(0)) : v;
  }
  void store(DType d, llvm::Value* v, llvm::Value* ptr, llvm::Value* index) {
    llvm::Type* t = storage_type(d);
    if (d == DType::boolean) v = b.CreateZExt(v, t);
    b.CreateStore(v, b.CreateInBoundsGEP(t, ptr, index));
  }
  llvm::Value* constant(const Tensor& c) {
    switch (c.dtype()) {
      case DType::f32:
        return llvm::ConstantFP::get(b.getFloatTy(), c.item<float>());
      case DType::f64:
        return llvm::ConstantFP::get(b.getDoubleTy(), c.item<double>());
      default:
        return b.getInt1(c.item<bool>());
    }
  }
  llvm::Value* libm(const char* name, DType d, std::initializer_list<llvm::Value*> args) {
    const std::string fn = d == DType::f32 ? std::string(name) + "f" : std::string(name);
    llvm::Type* t = storage_type(d);
    std::vector<llvm::Type*> params(args.size(), t);
    llvm::FunctionCallee callee =
        mod.getOrInsertFunction(fn, llvm::FunctionType::get(t, params, false));
    return b.CreateCall(callee, args);
  }
  llvm::Value* fconst(DType d, double v) { return llvm::ConstantFP::get(storage_type(d), v); }

  llvm::Value* unary(const std::string& op, DType d, llvm::Value* x) {
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
    if (op == "add") return b.CreateFAdd(x, y);
    if (op == "sub") return b.CreateFSub(x, y);
    if (op == "mul") return b.CreateFMul(x, y);
    if (op == "div") return b.CreateFDiv(x, y);
    if (op == "pow") return libm("pow", d, {x, y});
    if (op == "maximum" || op == "minimum") {
      // As the eager kernel: NaN if either is NaN (x + y), else the larger (smaller).
      llvm::Value* c = op == "maximum" ? b.CreateFCmpOGT(x, y) : b.CreateFCmpOLT(x, y);
      return b.CreateSelect(b.CreateFCmpUNO(x, y), b.CreateFAdd(x, y), b.CreateSelect(c, x, y));
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
    if (n.op == "copy" || n.op == "stop_gradient") return in[0];
    if (n.op == "logical_not") return b.CreateNot(in[0]);
    if (n.op == "select") return b.CreateSelect(in[0], in[1], in[2]);
    if (n.op == "cast") {
      if (d0 == out) return in[0];
      if (d0 == DType::boolean) return b.CreateUIToFP(in[0], storage_type(out));
      if (out == DType::boolean) return b.CreateFCmpUNE(in[0], fconst(d0, 0));
      return d0 == DType::f32 ? b.CreateFPExt(in[0], b.getDoubleTy())
                              : b.CreateFPTrunc(in[0], b.getFloatTy());
    }
    if (in.size() == 1) return unary(n.op, d0, in[0]);
    return binary(n.op, d0, in[0], in[1]);
  }
};

}  // namespace

namespace {
bool can_lower(const ir::Graph& g, const ir::Node& n) {
  auto it = supported_ops().find(n.op);
  if (it == supported_ops().end() || n.outputs.size() != 1) return false;
  const DType out = g.types[static_cast<size_t>(n.outputs[0])].dtype;
  std::vector<DType> in;
  for (int v : n.inputs)
    in.push_back(g.types[static_cast<size_t>(v)].dtype);
  switch (it->second) {
    case Kind::float_unary:
    case Kind::float_binary:
      return is_float(out) && std::all_of(in.begin(), in.end(), [&](DType d) { return d == out; });
    case Kind::compare:
      return is_float(in[0]) && in[1] == in[0] && out == DType::boolean;
    case Kind::logical:
      return out == DType::boolean &&
             std::all_of(in.begin(), in.end(), [](DType d) { return d == DType::boolean; });
    case Kind::select:
      return in[0] == DType::boolean && (is_float(out) || out == DType::boolean) && in[1] == out &&
             in[2] == out;
    case Kind::cast:
      return (is_float(in[0]) || in[0] == DType::boolean) &&
             (is_float(out) || out == DType::boolean);
    case Kind::copy:
      return is_float(out) || out == DType::boolean;
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
  return Fusible::no;
}

KernelPlan plan_kernel(const ir::Graph& g, const FusionGroup& group, std::string name) {
  KernelPlan p;
  p.name = std::move(name);
  p.group = &group;
  p.rank = group.shape.rank();
  p.row_program = group.row_program;
  std::vector<int> producer(g.types.size(), -1);
  for (size_t i = 0; i < g.nodes.size(); ++i)
    for (int v : g.nodes[i].outputs)
      producer[static_cast<size_t>(v)] = static_cast<int>(i);
  for (int v : group.inputs) {
    const Shape& s = g.types[static_cast<size_t>(v)].shape;
    KernelInput in{v, InputKind::broadcast, false};
    const int prod = producer[static_cast<size_t>(v)];
    const bool one = shape_is_one(s);
    if (one && prod >= 0 && g.nodes[static_cast<size_t>(prod)].op == "constant") {
      in.kind = InputKind::immediate;
    } else if (one) {
      in.kind = InputKind::scalar;
    } else if (s == group.shape) {
      in.kind = InputKind::full;
    } else if (group.row_program) {
      in.kind = is_row_value(s, group.shape) ? InputKind::row : InputKind::column;
    } else {
      const int64_t last = s.rank() > 0 ? s[s.rank() - 1] : 1;
      in.last_dim_broadcast = last == 1 && group.shape[p.rank - 1] != 1;
      p.rows = true;
    }
    p.inputs.push_back(in);
  }
  if (p.row_program)
    for (int v : group.outputs)
      p.output_full.push_back(g.types[static_cast<size_t>(v)].shape == group.shape);
  return p;
}

namespace {

void emit_kernel(Emitter& em, const ir::Graph& g, const KernelPlan& plan, llvm::TargetMachine& tm) {
  llvm::IRBuilder<>& b = em.b;
  llvm::LLVMContext& ctx = em.ctx;
  llvm::Type* i64 = b.getInt64Ty();
  llvm::Type* ptr = b.getPtrTy();
  auto* fty = llvm::FunctionType::get(b.getVoidTy(), {ptr, ptr, i64, i64}, false);
  auto* fn = llvm::Function::Create(fty, llvm::Function::ExternalLinkage, plan.name, em.mod);
  fn->addFnAttr("target-cpu", tm.getTargetCPU());
  fn->addFnAttr("target-features", tm.getTargetFeatureString());
  fn->addFnAttr(llvm::Attribute::NoUnwind);
  llvm::Value* bufs = fn->getArg(0);
  llvm::Value* dims = fn->getArg(1);
  llvm::Value* begin = fn->getArg(2);
  llvm::Value* end = fn->getArg(3);

  auto* entry = llvm::BasicBlock::Create(ctx, "entry", fn);
  b.SetInsertPoint(entry);
  // Base pointers, the one-element inputs' values, and the row geometry.
  const FusionGroup& grp = *plan.group;
  std::map<int, llvm::Value*> base, value;
  int slot = 0;
  auto next_ptr = [&] {
    return b.CreateLoad(ptr,
                        b.CreateConstInBoundsGEP1_64(ptr, bufs, static_cast<uint64_t>(slot++)));
  };
  for (const KernelInput& in : plan.inputs) {
    const DType d = g.types[static_cast<size_t>(in.value)].dtype;
    if (in.kind == InputKind::immediate) {
      const ir::Node* c = nullptr;
      for (const ir::Node& n : g.nodes)
        if (n.op == "constant" && n.outputs[0] == in.value) c = &n;
      value[in.value] = em.constant(g.constants[static_cast<size_t>(c->attrs.i("index"))]);
      continue;
    }
    llvm::Value* p = next_ptr();
    base[in.value] = p;
    if (in.kind == InputKind::scalar) value[in.value] = em.load(d, p, b.getInt64(0));
  }
  std::vector<llvm::Value*> out_ptrs;
  for (size_t k = 0; k < grp.outputs.size(); ++k)
    out_ptrs.push_back(next_ptr());

  // The body at one element: `flat` indexes full inputs and outputs; `bcast(k)` indexes the
  // k-th broadcast input.
  auto body = [&](llvm::Value* flat, const std::map<int, llvm::Value*>& bcast_index) {
    std::map<int, llvm::Value*> v = value;
    for (const KernelInput& in : plan.inputs) {
      const DType d = g.types[static_cast<size_t>(in.value)].dtype;
      if (in.kind == InputKind::full) v[in.value] = em.load(d, base[in.value], flat);
      if (in.kind == InputKind::broadcast)
        v[in.value] = em.load(d, base[in.value], bcast_index.at(in.value));
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
      em.store(g.types[static_cast<size_t>(o)].dtype, v.at(o), out_ptrs[k], flat);
    }
  };

  auto* exit = llvm::BasicBlock::Create(ctx, "exit", fn);
  auto counted_loop = [&](llvm::Value* from, llvm::Value* to, const char* name,
                          const std::function<void(llvm::Value*)>& inner) {
    llvm::BasicBlock* pre = b.GetInsertBlock();
    auto* loop = llvm::BasicBlock::Create(ctx, name, fn);
    auto* after = llvm::BasicBlock::Create(ctx, std::string(name) + ".end", fn);
    b.CreateCondBr(b.CreateICmpSLT(from, to), loop, after);
    b.SetInsertPoint(loop);
    llvm::PHINode* i = b.CreatePHI(i64, 2, std::string(name) + ".i");
    i->addIncoming(from, pre);
    inner(i);
    llvm::Value* next = b.CreateAdd(i, b.getInt64(1), "", true, true);
    i->addIncoming(next, b.GetInsertBlock());
    b.CreateCondBr(b.CreateICmpSLT(next, to), loop, after);
    b.SetInsertPoint(after);
  };

  if (!plan.rows) {
    counted_loop(begin, end, "elem", [&](llvm::Value* i) { body(i, {}); });
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
    int64_t at = r;
    for (const KernelInput& in : plan.inputs)
      if (in.kind == InputKind::broadcast)
        for (int64_t d = 0; d < r - 1; ++d)
          strides[in.value].push_back(dim(at++));
    counted_loop(begin, end, "row", [&](llvm::Value* row) {
      // The row's index over the outer dims, innermost first, and each input's offset.
      std::map<int, llvm::Value*> offset;
      for (const auto& [v, s] : strides)
        offset[v] = b.getInt64(0);
      llvm::Value* rem = row;
      for (int64_t d = r - 2; d >= 0; --d) {
        llvm::Value* idx = d == 0 ? rem : b.CreateURem(rem, outer[static_cast<size_t>(d)]);
        if (d > 0) rem = b.CreateUDiv(rem, outer[static_cast<size_t>(d)]);
        for (auto& [v, off] : offset)
          off = b.CreateAdd(off, b.CreateMul(idx, strides[v][static_cast<size_t>(d)]));
      }
      llvm::Value* row_base = b.CreateMul(row, cols);
      counted_loop(b.getInt64(0), cols, "col", [&](llvm::Value* j) {
        std::map<int, llvm::Value*> index;
        for (const KernelInput& in : plan.inputs)
          if (in.kind == InputKind::broadcast)
            index[in.value] =
                in.last_dim_broadcast ? offset[in.value] : b.CreateAdd(offset[in.value], j);
        body(b.CreateAdd(row_base, j), index);
      });
    });
  }
  b.CreateBr(exit);
  b.SetInsertPoint(exit);
  b.CreateRetVoid();
}

// A row program: per row, one loop over the columns per reduction (accumulating its
// input's elemental expression), per-row scalar code between them, and one final loop that
// writes the full outputs. Full values are recomputed in each loop that needs them.
void emit_row_program(Emitter& em, const ir::Graph& g, const KernelPlan& plan,
                      llvm::TargetMachine& tm) {
  llvm::IRBuilder<>& b = em.b;
  llvm::LLVMContext& ctx = em.ctx;
  llvm::Type* i64 = b.getInt64Ty();
  llvm::Type* ptr = b.getPtrTy();
  auto* fty = llvm::FunctionType::get(b.getVoidTy(), {ptr, ptr, i64, i64}, false);
  auto* fn = llvm::Function::Create(fty, llvm::Function::ExternalLinkage, plan.name, em.mod);
  fn->addFnAttr("target-cpu", tm.getTargetCPU());
  fn->addFnAttr("target-features", tm.getTargetFeatureString());
  fn->addFnAttr(llvm::Attribute::NoUnwind);
  llvm::Value* bufs = fn->getArg(0);
  b.SetInsertPoint(llvm::BasicBlock::Create(ctx, "entry", fn));
  llvm::Value* cols = b.CreateLoad(i64, fn->getArg(1));

  const FusionGroup& grp = *plan.group;
  std::map<int, llvm::Value*> base, fixed;  // buffers; values the same for the whole call
  std::map<int, InputKind> kind;
  int slot = 0;
  auto next_ptr = [&] {
    return b.CreateLoad(ptr,
                        b.CreateConstInBoundsGEP1_64(ptr, bufs, static_cast<uint64_t>(slot++)));
  };
  for (const KernelInput& in : plan.inputs) {
    kind[in.value] = in.kind;
    const DType d = g.types[static_cast<size_t>(in.value)].dtype;
    if (in.kind == InputKind::immediate) {
      for (const ir::Node& n : g.nodes)
        if (n.op == "constant" && n.outputs[0] == in.value)
          fixed[in.value] = em.constant(g.constants[static_cast<size_t>(n.attrs.i("index"))]);
      continue;
    }
    base[in.value] = next_ptr();
    if (in.kind == InputKind::scalar) fixed[in.value] = em.load(d, base[in.value], b.getInt64(0));
  }
  std::vector<llvm::Value*> out_ptrs;
  for (size_t k = 0; k < grp.outputs.size(); ++k)
    out_ptrs.push_back(next_ptr());
  std::map<int, const ir::Node*> member;
  for (int i : grp.nodes)
    member[g.nodes[static_cast<size_t>(i)].outputs[0]] = &g.nodes[static_cast<size_t>(i)];
  auto is_full = [&](int v) { return g.types[static_cast<size_t>(v)].shape == grp.shape; };
  auto dtype = [&](int v) { return g.types[static_cast<size_t>(v)].dtype; };

  // A loop over the columns [0, cols) with accumulators (phi nodes) carried across it.
  auto column_loop = [&](const std::vector<llvm::Value*>& init,
                         const std::function<std::vector<llvm::Value*>(
                             llvm::Value * j, const std::vector<llvm::Value*>& acc)>& step) {
    llvm::BasicBlock* pre = b.GetInsertBlock();
    auto* loop = llvm::BasicBlock::Create(ctx, "col", fn);
    auto* after = llvm::BasicBlock::Create(ctx, "col.end", fn);
    b.CreateCondBr(b.CreateICmpSGT(cols, b.getInt64(0)), loop, after);
    b.SetInsertPoint(loop);
    llvm::PHINode* j = b.CreatePHI(i64, 2);
    j->addIncoming(b.getInt64(0), pre);
    std::vector<llvm::PHINode*> acc;
    std::vector<llvm::Value*> acc_values;
    for (llvm::Value* v : init) {
      acc.push_back(b.CreatePHI(v->getType(), 2));
      acc.back()->addIncoming(v, pre);
      acc_values.push_back(acc.back());
    }
    const std::vector<llvm::Value*> next = step(j, acc_values);
    llvm::Value* jn = b.CreateAdd(j, b.getInt64(1), "", true, true);
    llvm::BasicBlock* latch = b.GetInsertBlock();
    j->addIncoming(jn, latch);
    for (size_t k = 0; k < acc.size(); ++k)
      acc[k]->addIncoming(next[k], latch);
    b.CreateCondBr(b.CreateICmpSLT(jn, cols), loop, after);
    b.SetInsertPoint(after);
    std::vector<llvm::Value*> out;
    for (size_t k = 0; k < acc.size(); ++k) {
      llvm::PHINode* r = b.CreatePHI(init[k]->getType(), 2);
      r->addIncoming(init[k], pre);
      r->addIncoming(next[k], latch);
      out.push_back(r);
    }
    return out;
  };

  llvm::BasicBlock* pre = b.GetInsertBlock();
  auto* row_loop = llvm::BasicBlock::Create(ctx, "row", fn);
  auto* exit = llvm::BasicBlock::Create(ctx, "exit", fn);
  b.CreateCondBr(b.CreateICmpSLT(fn->getArg(2), fn->getArg(3)), row_loop, exit);
  b.SetInsertPoint(row_loop);
  llvm::PHINode* row = b.CreatePHI(i64, 2);
  row->addIncoming(fn->getArg(2), pre);
  llvm::Value* row_base = b.CreateMul(row, cols);
  std::map<int, llvm::Value*> per_row = fixed;  // per-row values computed so far
  for (const KernelInput& in : plan.inputs)
    if (in.kind == InputKind::row)
      per_row[in.value] = em.load(dtype(in.value), base[in.value], row);

  // The elemental value of v at column j (memo: this loop body's values).
  std::function<llvm::Value*(int, llvm::Value*, std::map<int, llvm::Value*>&)> full_value =
      [&](int v, llvm::Value* j, std::map<int, llvm::Value*>& memo) -> llvm::Value* {
    if (auto it = per_row.find(v); it != per_row.end()) return it->second;
    if (auto it = memo.find(v); it != memo.end()) return it->second;
    llvm::Value* r = nullptr;
    if (auto k = kind.find(v); k != kind.end()) {
      r = em.load(dtype(v), base[v], k->second == InputKind::full ? b.CreateAdd(row_base, j) : j);
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
      per_row[out] = column_loop({init}, [&](llvm::Value* j, const std::vector<llvm::Value*>& acc) {
        std::map<int, llvm::Value*> memo;
        llvm::Value* x = full_value(n.inputs[0], j, memo);
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
            n.op == "reduce_max" ? llvm::Intrinsic::maximum : llvm::Intrinsic::minimum, acc[0], x)};
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
      for (size_t k = 0; k < grp.outputs.size(); ++k)
        if (plan.output_full[k]) {
          const int o = grp.outputs[k];
          em.store(dtype(o), full_value(o, j, memo), out_ptrs[k], b.CreateAdd(row_base, j));
        }
      return std::vector<llvm::Value*>{};
    });
  for (size_t k = 0; k < grp.outputs.size(); ++k)
    if (!plan.output_full[k]) {
      const int o = grp.outputs[k];
      em.store(dtype(o), per_row.at(o), out_ptrs[k], row);
    }
  llvm::Value* next = b.CreateAdd(row, b.getInt64(1), "", true, true);
  row->addIncoming(next, b.GetInsertBlock());
  b.CreateCondBr(b.CreateICmpSLT(next, fn->getArg(3)), row_loop, exit);
  b.SetInsertPoint(exit);
  b.CreateRetVoid();
}

std::string print_module(const llvm::Module& m) {
  std::string s;
  llvm::raw_string_ostream os(s);
  m.print(os, nullptr);
  return s;
}

std::string assembly_of(const llvm::Module& m, llvm::TargetMachine& tm) {
  std::unique_ptr<llvm::Module> copy = llvm::CloneModule(m);
  llvm::SmallString<4096> buf;
  llvm::raw_svector_ostream os(buf);
  llvm::legacy::PassManager pm;
  if (tm.addPassesToEmitFile(pm, os, nullptr, llvm::CodeGenFileType::AssemblyFile)) return {};
  pm.run(*copy);
  return std::string(buf.str());
}

}  // namespace

CompiledKernels compile_kernels(const ir::Graph& g, const std::vector<KernelPlan>& plans,
                                bool want_text) {
  CompiledKernels out;
  if (plans.empty()) return out;
  Jit& j = jit();
  std::lock_guard<std::mutex> lock(j.mu);
  auto ctx = std::make_unique<llvm::LLVMContext>();
  const std::string mod_name = fmt::format("kiln_m{}", j.modules++);
  auto mod = std::make_unique<llvm::Module>(mod_name, *ctx);
  mod->setDataLayout(j.lljit->getDataLayout());
  mod->setTargetTriple(j.lljit->getTargetTriple().str());
  llvm::IRBuilder<> builder(*ctx);
  Emitter em{*ctx, *mod, builder};
  std::vector<std::string> names;
  for (const KernelPlan& p : plans) {
    KernelPlan unique = p;
    unique.name = mod_name + "_" + p.name;
    names.push_back(unique.name);
    if (p.row_program)
      emit_row_program(em, g, unique, *j.tm);
    else
      emit_kernel(em, g, unique, *j.tm);
  }
  std::string err;
  llvm::raw_string_ostream es(err);
  KILN_ASSERT(!llvm::verifyModule(*mod, &es), "jit: invalid kernel module for '{}': {}", g.name,
              err);

  // The O3 pipeline for the host CPU.
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder pb(j.tm.get());
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3).run(*mod, mam);

  if (want_text) {
    out.llvm_ir = print_module(*mod);
    out.assembly = assembly_of(*mod, *j.tm);
  }
  if (auto e = j.lljit->addIRModule(llvm::orc::ThreadSafeModule(std::move(mod), std::move(ctx))))
    fail(std::move(e), "adding a module");
  for (const std::string& name : names) {
    auto addr = check(j.lljit->lookup(name), "looking up a kernel");
    out.fns.push_back(addr.toPtr<KernelFn>());
  }
  return out;
}

}  // namespace kiln::jit::cpu
