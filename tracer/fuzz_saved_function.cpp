// libFuzzer entry point for saved_function::load; not part of the library (CMakeLists.txt
// excludes tracer/fuzz_*.cpp). A valid bundle (a small function with two variables) is saved
// once into a scratch directory; each input then replaces one of its files -- the first byte
// picks which: even -> variables.safetensors, odd -> manifest.json -- with the remaining
// bytes, and load() must either succeed or raise kiln::Error, never crash. A bundle that
// loads is also run on ones of its first signature's input shape.
//
// Build from the repository root against a configured build tree in build/ (the library
// itself need not be instrumented; the loader and JSON code are compiled in here):
//   ninja -C build kiln
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Ibuild/include \
//     tracer/fuzz_saved_function.cpp tracer/saved_function.cpp tracer/json.cpp \
//     tracer/ir_text.cpp tracer/verify.cpp \
//     -Lbuild -lkiln -lfmt -Wl,-rpath,$PWD/build -o build/fuzz_saved_function
//   mkdir -p build/saved_corpus && build/fuzz_saved_function -max_len=4096 build/saved_corpus
// The harness seeds nothing itself; libFuzzer starts from empty input, or seed the corpus
// with "\0" + a saved variables.safetensors and "\1" + a saved manifest.json.

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include <kiln/kiln.h>
#include <kiln/tracer/saved_function.h>

namespace {

namespace fs = std::filesystem;

struct Bundle {
  fs::path dir;
  std::string manifest, variables;
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const fs::path& p, const char* data, size_t size) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(data, static_cast<std::streamsize>(size));
}

const Bundle& bundle() {
  static const Bundle b = [] {
    Bundle out;
    out.dir = fs::temp_directory_path() / ("kiln_fuzz_saved_" + std::to_string(::getpid()));
    kiln::Variable w(kiln::tensor({{1.f, 2.f}, {3.f, 4.f}}), "w");
    kiln::Variable flag(kiln::tensor({true, false}), "flag");
    auto f = kiln::function(
        [=](const kiln::Tensor& x) {
          return kiln::matmul(x, w) + kiln::Tensor(flag).to(kiln::f32);
        },
        kiln::FunctionOptions{.name = "fuzzed", .input_signature = {kiln::TensorSpec({-1, 2})}});
    kiln::saved_function::save(out.dir.string(), f);
    out.manifest = slurp(out.dir / "manifest.json");
    out.variables = slurp(out.dir / "variables.safetensors");
    std::atexit([] {
      std::error_code ec;
      fs::remove_all(bundle().dir, ec);
    });
    return out;
  }();
  return b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Bundle& b = bundle();
  if (size == 0) return 0;
  const bool manifest = (data[0] & 1) != 0;
  const char* body = reinterpret_cast<const char*>(data + 1);
  if (manifest) {
    spit(b.dir / "manifest.json", body, size - 1);
    spit(b.dir / "variables.safetensors", b.variables.data(), b.variables.size());
  } else {
    spit(b.dir / "manifest.json", b.manifest.data(), b.manifest.size());
    spit(b.dir / "variables.safetensors", body, size - 1);
  }
  try {
    const kiln::saved_function::Loaded m = kiln::saved_function::load(b.dir.string());
    const auto& sig = m.signatures().at(0);
    std::vector<kiln::Tensor> inputs;
    for (const kiln::TensorType& t : sig.inputs) {
      kiln::Shape s = t.shape;
      for (auto& d : s.dims())
        if (d < 0) d = 2;
      if (s.numel() > 4096) return 0;
      inputs.push_back(kiln::ones(s, t.dtype));
    }
    (void)m(inputs);
  } catch (const kiln::Error&) {
    // rejected with a message: fine
  }
  return 0;
}
