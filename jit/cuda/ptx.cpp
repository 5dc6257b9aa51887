#include <kiln/jit/cuda/ptx.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <set>

#include <llvm/Bitcode/BitcodeReader.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/IntrinsicsNVPTX.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Linker/Linker.h>
#include <llvm/MC/TargetRegistry.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/Target/TargetOptions.h>

#include "../cpu/emitter.h"

namespace kiln::jit::cuda {
namespace {

constexpr const char* kTriple = "nvptx64-nvidia-cuda";

std::unique_ptr<llvm::TargetMachine> target_machine(int sm) {
  static std::once_flag once;
  std::call_once(once, [] {
    LLVMInitializeNVPTXTargetInfo();
    LLVMInitializeNVPTXTarget();
    LLVMInitializeNVPTXTargetMC();
    LLVMInitializeNVPTXAsmPrinter();
  });
  std::string err;
  const llvm::Target* target = llvm::TargetRegistry::lookupTarget(kTriple, err);
  KILN_CHECK(target != nullptr, "jit: LLVM has no NVPTX target: {}", err);
  // PTX ISA 7.8: the first with sm_90, read by every driver since CUDA 11.8.
  std::unique_ptr<llvm::TargetMachine> tm(target->createTargetMachine(
      kTriple, fmt::format("sm_{}", sm), "+ptx78", llvm::TargetOptions(), std::nullopt,
      std::nullopt, llvm::CodeGenOptLevel::Aggressive));
  KILN_CHECK(tm != nullptr, "jit: LLVM cannot target sm_{}", sm);
  return tm;
}

// The kernel's entry: one thread per unit, calling the x86-ABI body on [i, i + 1).
void emit_entry(llvm::Module& mod, llvm::IRBuilder<>& b, llvm::Function* body,
                const std::string& name, int64_t nbuf, int64_t ndim) {
  llvm::LLVMContext& ctx = mod.getContext();
  llvm::Type* i64 = b.getInt64Ty();
  llvm::Type* ptr = b.getPtrTy();
  std::vector<llvm::Type*> params(static_cast<size_t>(nbuf), ptr);
  params.insert(params.end(), static_cast<size_t>(ndim) + 1, i64);
  auto* fn = llvm::Function::Create(llvm::FunctionType::get(b.getVoidTy(), params, false),
                                    llvm::Function::ExternalLinkage, name, mod);
  fn->addFnAttr(llvm::Attribute::NoUnwind);
  b.SetInsertPoint(llvm::BasicBlock::Create(ctx, "entry", fn));
  // The arrays the body reads; SROA turns them back into the parameters once it is inlined.
  auto* buf_ty = llvm::ArrayType::get(ptr, static_cast<uint64_t>(std::max<int64_t>(nbuf, 1)));
  auto* dim_ty = llvm::ArrayType::get(i64, static_cast<uint64_t>(std::max<int64_t>(ndim, 1)));
  llvm::Value* bufs = b.CreateAlloca(buf_ty);
  llvm::Value* dims = b.CreateAlloca(dim_ty);
  for (int64_t k = 0; k < nbuf; ++k)
    b.CreateStore(fn->getArg(static_cast<unsigned>(k)),
                  b.CreateConstInBoundsGEP2_64(buf_ty, bufs, 0, static_cast<uint64_t>(k)));
  for (int64_t k = 0; k < ndim; ++k)
    b.CreateStore(fn->getArg(static_cast<unsigned>(nbuf + k)),
                  b.CreateConstInBoundsGEP2_64(dim_ty, dims, 0, static_cast<uint64_t>(k)));
  auto sreg = [&](llvm::Intrinsic::ID id) {
    return b.CreateZExt(b.CreateIntrinsic(id, {}, {}), i64);
  };
  llvm::Value* i = b.CreateAdd(b.CreateMul(sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_ctaid_x),
                                           sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_ntid_x)),
                               sreg(llvm::Intrinsic::nvvm_read_ptx_sreg_tid_x));
  llvm::Value* units = fn->getArg(static_cast<unsigned>(nbuf + ndim));
  auto* run = llvm::BasicBlock::Create(ctx, "run", fn);
  auto* done = llvm::BasicBlock::Create(ctx, "done", fn);
  b.CreateCondBr(b.CreateICmpSLT(i, units), run, done);
  b.SetInsertPoint(run);
  b.CreateCall(body, {bufs, dims, i, b.CreateAdd(i, b.getInt64(1), "", true, true)});
  b.CreateBr(done);
  b.SetInsertPoint(done);
  b.CreateRetVoid();
  // Marks it a kernel (LLVM 19 reads nvvm.annotations; the ptx_kernel convention came later).
  mod.getOrInsertNamedMetadata("nvvm.annotations")
      ->addOperand(llvm::MDNode::get(
          ctx, {llvm::ValueAsMetadata::get(fn), llvm::MDString::get(ctx, "kernel"),
                llvm::ConstantAsMetadata::get(b.getInt32(1))}));
}

// Links the libdevice functions the module calls, then makes every function but the entries
// internal, so the optimizer drops what nothing uses.
void link_libdevice(llvm::Module& mod, const std::string& kernel) {
  const std::string path = libdevice_path();
  KILN_CHECK(!path.empty(),
             "jit: kernel '{}' calls the CUDA math library (libdevice), which was not found: set "
             "KILN_LIBDEVICE to libdevice.10.bc (in the CUDA toolkit's nvvm/libdevice/)",
             kernel);
  auto buf = llvm::MemoryBuffer::getFile(path);
  KILN_CHECK(static_cast<bool>(buf), "jit: cannot read libdevice at {}: {}", path,
             buf.getError().message());
  auto lib = llvm::parseBitcodeFile((*buf)->getMemBufferRef(), mod.getContext());
  if (!lib) {
    std::string msg;
    llvm::raw_string_ostream os(msg);
    os << lib.takeError();
    KILN_FAIL("jit: cannot parse libdevice at {}: {}", path, msg);
  }
  (*lib)->setTargetTriple(mod.getTargetTriple());
  (*lib)->setDataLayout(mod.getDataLayout());
  KILN_CHECK(!llvm::Linker::linkModules(mod, std::move(*lib), llvm::Linker::LinkOnlyNeeded),
             "jit: linking libdevice ({}) failed", path);
}

std::string text_of(const llvm::Module& m) {
  std::string s;
  llvm::raw_string_ostream os(s);
  m.print(os, nullptr);
  return s;
}

}  // namespace

std::string libdevice_path() {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (const char* env = std::getenv("KILN_LIBDEVICE"); env != nullptr && *env != '\0')
    return fs::is_regular_file(env, ec) ? env : "";
#ifdef KILN_LIBDEVICE_DEFAULT
  if (fs::is_regular_file(KILN_LIBDEVICE_DEFAULT, ec)) return KILN_LIBDEVICE_DEFAULT;
#endif
  return "";
}

PtxModule emit_ptx(const ir::Graph& g, const std::vector<cpu::KernelPlan>& plans, int sm,
                   bool want_ir) {
  PtxModule out;
  if (plans.empty()) return out;
  std::unique_ptr<llvm::TargetMachine> tm = target_machine(sm);
  llvm::LLVMContext ctx;
  llvm::Module mod("kiln_ptx", ctx);
  mod.setTargetTriple(kTriple);
  mod.setDataLayout(tm->createDataLayout());
  // libdevice branches on this: 0 keeps f32 denormals (as the CPU does).
  mod.addModuleFlag(llvm::Module::Override, "nvvm-reflect-ftz", uint32_t{0});
  llvm::IRBuilder<> builder(ctx);
  cpu::Emitter em{ctx, mod, builder, "__nv_"};
  for (const cpu::KernelPlan& p : plans) {
    if (p.row_program)
      cpu::emit_row_program(em, g, p, *tm);
    else if (p.column_program)
      cpu::emit_column_program(em, g, p, *tm);
    else
      cpu::emit_kernel(em, g, p, *tm);
    llvm::Function* body = mod.getFunction(p.name);
    body->setName(p.name + "_body");
    body->setLinkage(llvm::Function::InternalLinkage);
    body->addFnAttr(llvm::Attribute::AlwaysInline);
  }
  // Entries are named after the module's text, as on the CPU: identical kernels, one symbol.
  const uint64_t key = std::hash<std::string>{}(text_of(mod) + fmt::format("|sm_{}", sm));
  for (const cpu::KernelPlan& p : plans) {
    PtxKernel k{fmt::format("kiln_{:016x}_{}", key, p.name), cpu::buffers_size(p),
                cpu::dims_size(p)};
    emit_entry(mod, builder, mod.getFunction(p.name + "_body"), k.name, k.buffers, k.dims);
    out.kernels.push_back(std::move(k));
  }
  for (const llvm::Function& f : mod)
    if (f.isDeclaration() && f.getName().starts_with("__nv_")) out.uses_libdevice = true;
  if (out.uses_libdevice) link_libdevice(mod, plans.front().name);
  std::set<std::string> entries;
  for (const PtxKernel& k : out.kernels)
    entries.insert(k.name);
  for (llvm::Function& f : mod)
    if (!f.isDeclaration() && !entries.count(f.getName().str()))
      f.setLinkage(llvm::Function::InternalLinkage);
  std::string err;
  llvm::raw_string_ostream es(err);
  KILN_ASSERT(!llvm::verifyModule(mod, &es), "jit: invalid NVPTX module for '{}': {}", g.name, err);

  // The O3 pipeline; the NVPTX target adds its own passes to it (NVVMReflect among them).
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder pb(tm.get());
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3).run(mod, mam);
  if (want_ir) out.llvm_ir = text_of(mod);

  llvm::SmallString<0> ptx;
  llvm::raw_svector_ostream os(ptx);
  llvm::legacy::PassManager pm;
  KILN_ASSERT(!tm->addPassesToEmitFile(pm, os, nullptr, llvm::CodeGenFileType::AssemblyFile),
              "jit: the NVPTX target cannot emit PTX");
  pm.run(mod);
  out.ptx.assign(ptx.begin(), ptx.end());
  return out;
}

}  // namespace kiln::jit::cuda
