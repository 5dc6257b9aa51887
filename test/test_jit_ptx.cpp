// The NVPTX code generator without a GPU: the fused kernels of the tracer corpus, of seeded
// fuzzer programs and of the training patterns (softmax, layer norm, cross-entropy, Adam, f64
// math through libdevice) are emitted as PTX and checked by the CUDA toolkit's ptxas for
// sm_80 and sm_90, so codegen regressions fail here in CI. Skips when ptxas is missing.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <kiln/jit/cuda/ptx.h>
#include <kiln/jit/executable.h>

#include "corpus.h"
#include "jit_fuzz_check.h"

using namespace kiln;
using kiln::testing::rnd;

namespace {

std::string ptxas_path() {
#ifdef KILN_PTXAS
  std::error_code ec;
  if (std::filesystem::is_regular_file(KILN_PTXAS, ec)) return KILN_PTXAS;
#endif
  return "";
}

// "" when ptxas accepts the module for sm_<sm>, else what it said.
std::string ptxas(const std::string& ptx, int sm) {
  namespace fs = std::filesystem;
  static int n = 0;
  const fs::path dir = fs::temp_directory_path();
  const fs::path src = dir / fmt::format("kiln_ptx_{}_{}.ptx", ::getpid(), n);
  const fs::path log = dir / fmt::format("kiln_ptx_{}_{}.log", ::getpid(), n++);
  std::ofstream(src) << ptx;
  const std::string cmd = fmt::format("'{}' -arch=sm_{} '{}' -o /dev/null > '{}' 2>&1",
                                      ptxas_path(), sm, src.string(), log.string());
  const int rc = std::system(cmd.c_str());
  std::ifstream in(log);
  std::string said((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  fs::remove(src);
  fs::remove(log);
  return rc == 0 ? "" : fmt::format("ptxas exited with {}: {}", rc, said);
}

// The parameters declared in the .entry of `name`.
int64_t count_params(const std::string& ptx, const std::string& name) {
  const size_t start = ptx.find(".entry " + name + "(");
  const size_t end = ptx.find(')', start);
  int64_t n = 0;
  for (size_t at = ptx.find(".param", start); at < end; at = ptx.find(".param", at + 1))
    ++n;
  return n;
}

void skip() {
  WARN("skipped: ptxas not found (install the CUDA toolkit)");
}

// Compiles the concrete function's graph as the CPU JIT plans it, emits PTX for sm_80 and
// sm_90 and has ptxas check both. Returns the sm_90 module.
jit::cuda::PtxModule check_ptx(const ConcreteFunction& cf, const std::string& what) {
  INFO(what);
  const jit::Executable exe(cf.graph());
  jit::cuda::PtxModule last;
  for (int sm : {80, 90}) {
    jit::cuda::PtxModule m = jit::cuda::emit_ptx(exe.graph(), exe.kernels(), sm);
    REQUIRE(m.kernels.size() == exe.kernels().size());
    for (const jit::cuda::PtxKernel& k : m.kernels) {
      CHECK(m.ptx.find(".entry " + k.name + "(") != std::string::npos);
      // Its parameters: the buffers, the dims and the unit count, as the launcher passes them.
      CHECK(count_params(m.ptx, k.name) == k.buffers + k.dims + 1);
    }
    // Everything resolved inside the module: no calls out, no reflection left.
    CHECK(m.ptx.find(".extern .func") == std::string::npos);
    CHECK(m.ptx.find("__nvvm_reflect") == std::string::npos);
    if (!m.kernels.empty()) {
      CHECK(m.ptx.find(fmt::format(".target sm_{}", sm)) != std::string::npos);
      INFO(m.ptx.substr(0, 4000));
      CHECK(ptxas(m.ptx, sm) == "");
    }
    last = std::move(m);
  }
  return last;
}

}  // namespace

TEST_CASE("ptx: the tracer corpus's kernels pass ptxas for sm_80 and sm_90") {
  if (ptxas_path().empty()) return skip();
  int kernels = 0;
  for (const auto& c : kiln::testing::corpus()) {
    auto fn = kiln::function(c.fn);
    const ConcreteFunction cf = fn.get_concrete_function(rnd(c.x, 1), rnd(c.y, 2));
    kernels += static_cast<int>(check_ptx(cf, c.name).kernels.size());
  }
  CHECK(kernels > 30);
}

TEST_CASE("ptx: seeded fuzzer programs (every op and dtype, dynamic dims) pass ptxas") {
  if (ptxas_path().empty()) return skip();
  int kernels = 0;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const fuzz::Program p = fuzz::generate(seed);
    auto fn = fuzz::make_function(p, true);
    const std::vector<Tensor> in = fuzz::make_inputs(p, p.batches.empty() ? 1 : p.batches[0], 0);
    const ConcreteFunction cf = fn.get_concrete_function(in[0], in[1], in[2]);
    kernels += static_cast<int>(check_ptx(cf, fuzz::to_string(p)).kernels.size());
  }
  CHECK(kernels > 40);
}

TEST_CASE("ptx: training patterns, f64 math through libdevice, and kernels of every kind") {
  if (ptxas_path().empty()) return skip();
  const Tensor x = rnd({64, 33}, 1), y = rnd({64, 33}, 2);
  struct Pattern {
    const char* name;
    std::function<Tensor(const Tensor&, const Tensor&)> fn;
    const char* kind;  // a kernel kind the optimized IR must show
  };
  const Pattern patterns[] = {
      {"softmax", [](auto& a, auto&) { return softmax(a, -1); }, "row program"},
      {"layer norm",
       [](auto& a, auto& b) {
         Tensor m = mean(a, {-1}, true);
         Tensor v = mean(square(a - m), {-1}, true);
         return (a - m) * rsqrt(v + 1e-5f) * b;
       },
       "row program"},
      {"column sums", [](auto& a, auto& b) { return sum(a * b, {0}); }, "column program"},
      {"short matmul in a column program",
       [](auto& a, auto& b) {
         return sum(where(a > 0.f, matmul(b.slice(1, 0, 8), a.slice(0, 0, 8)), 0.f), {0});
       },
       "column program over [64,33]: matmul"},
      {"weight gradient in a column program",
       [](auto& a, auto& b) {
         Tensor dy = b.slice(1, 0, 8);  // before the program, which it must be ready for
         Tensor s = sum(where(a > 0.f, a * 2.f, 0.f), {0});
         return matmul(transpose(a, {1, 0}), dy) + reshape(s, {33, 1});
       },
       "reduce_sum matmul ->"},
      {"broadcast rows", [](auto& a, auto& b) { return a * b.slice(0, 0, 1) + 1.f; }, "rows"},
      {"f64 libdevice",
       [](auto& a, auto& b) {
         Tensor a64 = cast(a, f64), b64 = cast(b, f64);
         return exp(a64) + log(abs(b64) + 1.0) + tanh(a64) + erf(b64) + sin(a64) * cos(b64) +
                log1p(abs(a64)) + expm1(b64) + pow(abs(a64) + 1.0, b64);
       },
       "elements"},
      {"f32 libm", [](auto& a, auto& b) { return sin(a) + pow(abs(b) + 1.f, a); }, "elements"},
      {"ints and bools",
       [](auto& a, auto& b) {
         Tensor i = cast(a * 10.f, i32);
         return cast(where(logical_and(a > b, i > 0), i * 3 - 1, -i), f32);
       },
       "elements"},
  };
  for (const Pattern& p : patterns) {
    const ConcreteFunction cf = kiln::function(p.fn).get_concrete_function(x, y);
    CAPTURE(p.name);
    CHECK(cf.ir(IRStage::optimized).find(p.kind) != std::string::npos);
    const jit::cuda::PtxModule m = check_ptx(cf, p.name);
    CHECK(m.uses_libdevice == (std::string(p.name).find("lib") != std::string::npos));
  }
  // A train step's Adam update, and the cross-entropy with its gradient.
  Variable w(rnd({33, 10}, 3), "w"), m(zeros({33, 10}), "m"), v(zeros({33, 10}), "v");
  auto step = kiln::function([&](const Tensor& a, const Tensor& labels) {
    GradientTape tape;
    Tensor loss = mean(sparse_softmax_cross_entropy_with_logits(labels, matmul(a, w.value())));
    const Tensor g = tape.gradient(loss, {w})[0];
    const AdamUpdate u = adam_update(w.value(), m.value(), v.value(), g, 1e-3, 0.9, 0.999, 1e-7);
    w.assign(u.var);
    m.assign(u.m);
    v.assign(u.v);
    return loss;
  });
  const Tensor labels = random::randint({64}, 0, 10, i32);
  check_ptx(step.get_concrete_function(x, labels), "train step");
}

TEST_CASE("ptx: a kernel that needs libdevice says so when it cannot be found") {
  ::setenv("KILN_LIBDEVICE", "/nonexistent/libdevice.10.bc", 1);
  CHECK(jit::cuda::libdevice_path().empty());
  auto fn = kiln::function([](const Tensor& a) { return exp(cast(a, f64)) * 2.0; });
  const ConcreteFunction cf = fn.get_concrete_function(rnd({8}, 1));
  const jit::Executable exe(cf.graph());
  try {
    jit::cuda::emit_ptx(exe.graph(), exe.kernels(), 90);
    FAIL("expected kiln::Error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("libdevice") != std::string::npos);
    CHECK(std::string(e.what()).find("KILN_LIBDEVICE") != std::string::npos);
  }
  ::unsetenv("KILN_LIBDEVICE");
  // Without libm calls the module needs no libdevice at all.
  auto plain = kiln::function([](const Tensor& a) { return exp(a) * 2.f; });
  const jit::Executable exe2(plain.get_concrete_function(rnd({8}, 1)).graph());
  ::setenv("KILN_LIBDEVICE", "/nonexistent/libdevice.10.bc", 1);
  CHECK_FALSE(jit::cuda::emit_ptx(exe2.graph(), exe2.kernels(), 90).uses_libdevice);
  ::unsetenv("KILN_LIBDEVICE");
}
