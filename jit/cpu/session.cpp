// The JIT session (codegen.h, compile_kernels): one LLJIT for the process, the optimization
// pipeline, objects and their on-disk cache (KILN_CACHE_DIR), one JITDylib per module, and
// the modules' lifetime: a module is unloaded when the last CompiledKernels holding it goes.
#include <kiln/jit/cpu/codegen.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include <llvm/Config/llvm-config.h>
#include <llvm/ExecutionEngine/Orc/ExecutionUtils.h>
#include <llvm/ExecutionEngine/Orc/JITTargetMachineBuilder.h>
#include <llvm/ExecutionEngine/Orc/LLJIT.h>
#include <llvm/IR/IRBuilder.h>
#include <llvm/IR/LegacyPassManager.h>
#include <llvm/IR/Module.h>
#include <llvm/IR/Verifier.h>
#include <llvm/Passes/PassBuilder.h>
#include <llvm/Support/MemoryBuffer.h>
#include <llvm/Support/TargetSelect.h>
#include <llvm/Support/raw_ostream.h>
#include <llvm/Target/TargetMachine.h>
#include <llvm/Transforms/Utils/Cloning.h>

#include <kiln/tracer/file_util.h>

#include "emitter.h"

namespace kiln::jit::cpu {
namespace {

// ---- the JIT ---------------------------------------------------------------------------------

struct Jit {
  std::unique_ptr<llvm::orc::LLJIT> lljit;
  std::unique_ptr<llvm::TargetMachine> tm;
  std::mutex mu;
  int64_t dylibs = 0;
  // Module key -> its kernels, while some CompiledKernels holds the module.
  struct Loaded {
    std::vector<KernelFn> fns, stream_fns;
    std::weak_ptr<const void> module;
  };
  std::map<uint64_t, Loaded> loaded;
  KernelCacheStats stats;
  std::atomic<int64_t> live{0};
};

// FNV-1a: a stable 64-bit hash of the module text (keys the caches across processes).
uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// KILN_CACHE_DIR files: "KILNOBJ1", the object's size and FNV-1a (8 bytes each), the object.
// A file that is short, foreign or does not match its hash is ignored and rewritten.
constexpr char kMagic[8] = {'K', 'I', 'L', 'N', 'O', 'B', 'J', '1'};

std::filesystem::path cache_path(const std::string& dir, uint64_t key) {
  return std::filesystem::path(dir) / fmt::format("{:016x}.o", key);
}

std::optional<std::string> read_cached(const std::string& dir, uint64_t key) {
  std::ifstream in(cache_path(dir, key), std::ios::binary);
  if (!in) return std::nullopt;
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 24 || bytes.compare(0, 8, kMagic, 8) != 0) return std::nullopt;
  uint64_t size = 0, hash = 0;
  std::memcpy(&size, bytes.data() + 8, 8);
  std::memcpy(&hash, bytes.data() + 16, 8);
  if (bytes.size() - 24 != size) return std::nullopt;
  std::string obj = bytes.substr(24);
  if (fnv1a(obj) != hash) return std::nullopt;
  return obj;
}

void write_cached(const std::string& dir, uint64_t key, const std::string& obj) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const uint64_t size = obj.size(), hash = fnv1a(obj);
  std::string bytes(kMagic, 8);
  bytes.append(reinterpret_cast<const char*>(&size), 8);
  bytes.append(reinterpret_cast<const char*>(&hash), 8);
  bytes += obj;
  try {
    write_file_atomically(cache_path(dir, key), bytes, "KILN_CACHE_DIR");
  } catch (const Error&) {
    // A cache: failing to fill it only costs a later compile.
  }
}

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

// One module's JITDylib. Its code is unmapped when the last CompiledKernels holding it goes:
// a process that compiles function after function (a fuzzer, a server tracing new shapes)
// would otherwise keep every kernel it ever made, and the kernel refuses new mappings at
// vm.max_map_count (65530 by default: ~37,000 modules here).
struct LoadedModule {
  llvm::orc::JITDylib* jd = nullptr;
  ~LoadedModule() {
    Jit& j = jit();
    j.live.fetch_sub(1, std::memory_order_relaxed);
    // ORC's session serializes this with the other threads' compiles.
    if (llvm::Error e = j.lljit->getExecutionSession().removeJITDylib(*jd))
      llvm::consumeError(std::move(e));  // nothing to do for a dylib that would not close
  }
};

}  // namespace

namespace {

// After the O3 pipeline, in each streaming entry (emit_kernel): the vectorizer's loops there
// start at a 64-byte aligned element and step by whole vectors, so each vector store in their
// bodies is aligned to its size (up to 64 bytes). Those stores become aligned and
// non-temporal; scalar stores (the head and the remainder) stay as they are.
void mark_streaming_stores(llvm::Module& m) {
  const llvm::DataLayout& dl = m.getDataLayout();
  llvm::MDNode* nontemporal =
      llvm::MDNode::get(m.getContext(), {llvm::ConstantAsMetadata::get(llvm::ConstantInt::get(
                                            llvm::Type::getInt32Ty(m.getContext()), 1))});
  for (llvm::Function& f : m) {
    if (!f.hasFnAttribute("kiln-stream")) continue;
    for (llvm::BasicBlock& bb : f) {
      if (!bb.getName().contains("vector.body")) continue;
      for (llvm::Instruction& i : bb) {
        auto* st = llvm::dyn_cast<llvm::StoreInst>(&i);
        if (st == nullptr || !st->getValueOperand()->getType()->isVectorTy()) continue;
        const uint64_t size = dl.getTypeStoreSize(st->getValueOperand()->getType());
        if (!llvm::isPowerOf2_64(size)) continue;
        st->setAlignment(llvm::Align(std::min<uint64_t>(size, 64)));
        st->setMetadata(llvm::LLVMContext::MD_nontemporal, nontemporal);
      }
    }
  }
}

std::string print_module(const llvm::Module& m) {
  std::string s;
  llvm::raw_string_ostream os(s);
  m.print(os, nullptr);
  return s;
}

std::string object_of(const llvm::Module& m, llvm::TargetMachine& tm) {
  std::unique_ptr<llvm::Module> copy = llvm::CloneModule(m);
  llvm::SmallString<16384> buf;
  llvm::raw_svector_ostream os(buf);
  llvm::legacy::PassManager pm;
  KILN_ASSERT(!tm.addPassesToEmitFile(pm, os, nullptr, llvm::CodeGenFileType::ObjectFile),
              "jit: the target cannot emit object files");
  pm.run(*copy);
  return std::string(buf.str());
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

KernelCacheStats kernel_cache_stats() {
  Jit& j = jit();
  std::lock_guard<std::mutex> lock(j.mu);
  KernelCacheStats s = j.stats;
  s.live = j.live.load(std::memory_order_relaxed);
  return s;
}

void forget_loaded_kernels() {
  Jit& j = jit();
  std::lock_guard<std::mutex> lock(j.mu);
  j.loaded.clear();
}

CompiledKernels compile_kernels(const ir::Graph& g, const std::vector<KernelPlan>& plans,
                                bool want_text) {
  CompiledKernels out;
  if (plans.empty()) return out;
  Jit& j = jit();
  std::lock_guard<std::mutex> lock(j.mu);
  auto ctx = std::make_unique<llvm::LLVMContext>();
  auto mod = std::make_unique<llvm::Module>("kiln", *ctx);
  mod->setDataLayout(j.lljit->getDataLayout());
  mod->setTargetTriple(j.lljit->getTargetTriple().str());
  llvm::IRBuilder<> builder(*ctx);
  Emitter em{*ctx, *mod, builder};
  for (const KernelPlan& p : plans) {
    if (p.row_program)
      emit_row_program(em, g, p, *j.tm);
    else if (p.column_program)
      emit_column_program(em, g, p, *j.tm);
    else
      emit_kernel(em, g, p, *j.tm);
  }
  for (const KernelPlan& p : plans)
    if (p.stream) {
      KernelPlan sp = p;
      sp.name += "_stream";
      sp.in_place.clear();
      emit_kernel(em, g, sp, *j.tm, /*stream=*/true);
      mod->getFunction(sp.name)->addFnAttr("kiln-stream");
    }
  std::string err;
  llvm::raw_string_ostream es(err);
  KILN_ASSERT(!llvm::verifyModule(*mod, &es), "jit: invalid kernel module for '{}': {}", g.name,
              err);
  // The module's key: its text, the CPU it is built for, and the LLVM version. Symbols are
  // named after it, so identical kernels share one definition in this process.
  const uint64_t key = fnv1a(print_module(*mod) + "|" + j.tm->getTargetCPU().str() + "|" +
                             j.tm->getTargetFeatureString().str() + "|" + LLVM_VERSION_STRING);
  const std::string prefix = fmt::format("kiln_{:016x}_", key);
  // The entries, then the streaming ones ("" where a plan has none).
  std::vector<std::string> names;
  for (const KernelPlan& p : plans) {
    names.push_back(prefix + p.name);
    mod->getFunction(p.name)->setName(names.back());
  }
  for (const KernelPlan& p : plans) {
    llvm::Function* f = mod->getFunction(p.name + "_stream");
    names.push_back(f != nullptr ? prefix + p.name + "_stream" : "");
    if (f != nullptr) f->setName(names.back());
  }
  std::shared_ptr<const void> held;  // the module, when loaded and still held
  auto hit = j.loaded.find(key);
  if (hit != j.loaded.end()) {
    held = hit->second.module.lock();
    if (!held) {  // its last holder let it go: compiled again below
      j.loaded.erase(hit);
      hit = j.loaded.end();
    }
  }
  if (hit != j.loaded.end() && !want_text) {
    ++j.stats.reused;
    return CompiledKernels{hit->second.fns, hit->second.stream_fns, held, {}, {}};
  }

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
  mark_streaming_stores(*mod);
  if (want_text) {
    out.llvm_ir = print_module(*mod);
    out.assembly = assembly_of(*mod, *j.tm);
  }
  if (hit != j.loaded.end()) {
    ++j.stats.reused;
    out.fns = hit->second.fns;
    out.stream_fns = hit->second.stream_fns;
    out.module = held;
    return out;
  }

  // The object: from KILN_CACHE_DIR when it holds a valid one, else compiled (and stored).
  const char* env = std::getenv("KILN_CACHE_DIR");
  const std::string dir = env != nullptr ? env : "";
  std::optional<std::string> obj;
  if (!dir.empty()) obj = read_cached(dir, key);
  if (obj) {
    ++j.stats.loaded_from_disk;
  } else {
    obj = object_of(*mod, *j.tm);
    ++j.stats.compiled;
    if (!dir.empty()) write_cached(dir, key, *obj);
  }
  // One JITDylib per module (its symbols may be defined again after forget_loaded_kernels);
  // the main one, searched after it, resolves libm from the process.
  auto created = j.lljit->createJITDylib(fmt::format("kiln_dylib{}", j.dylibs++));
  if (!created) fail(created.takeError(), "creating a dylib");
  llvm::orc::JITDylib& jd = *created;
  // From here the module's holder removes the dylib again, also when adding it fails.
  auto module = std::make_shared<LoadedModule>();
  module->jd = &jd;
  j.live.fetch_add(1, std::memory_order_relaxed);
  jd.addToLinkOrder(j.lljit->getMainJITDylib());
  if (auto e = j.lljit->addObjectFile(jd, llvm::MemoryBuffer::getMemBufferCopy(*obj)))
    fail(std::move(e), "adding a kernel object");
  for (size_t i = 0; i < names.size(); ++i) {
    KernelFn fn = nullptr;
    if (!names[i].empty())
      fn = check(j.lljit->lookup(jd, names[i]), "looking up a kernel").toPtr<KernelFn>();
    (i < plans.size() ? out.fns : out.stream_fns).push_back(fn);
  }
  out.module = module;
  // Entries of modules let go are dropped when looked up, and swept here now and then.
  if (j.loaded.size() > 64 + 2 * static_cast<size_t>(j.live.load(std::memory_order_relaxed)))
    std::erase_if(j.loaded, [](const auto& e) { return e.second.module.expired(); });
  j.loaded[key] = Jit::Loaded{out.fns, out.stream_fns, out.module};
  return out;
}

}  // namespace kiln::jit::cpu
