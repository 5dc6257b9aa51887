// libFuzzer entry point for the IR text parser; not part of the library (CMakeLists.txt
// excludes tracer/fuzz_*.cpp). It checks that parse() never crashes and raises only
// kiln::Error, that whatever it accepts prints to text it accepts again with the same
// print (print(parse(print(g))) == print(g)), and that verify() never crashes either.
//
// Build from the repository root against a configured build tree in build/ (the library
// itself need not be instrumented; the parser and verifier are compiled in here):
//   ninja -C build kiln
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Ibuild/include \
//     tracer/fuzz_ir_parser.cpp tracer/ir_text.cpp tracer/verify.cpp \
//     -Lbuild -lkiln -lfmt -Wl,-rpath,$PWD/build -o build/fuzz_ir_parser
//   mkdir -p build/ir_corpus && build/fuzz_ir_parser -max_len=4096 build/ir_corpus
// Seed the corpus with a few printed graphs (e.g. the golden texts in test/test_ir.cpp).

#include <cstdint>
#include <string>
#include <string_view>

#include <kiln/tracer/graph.h>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  kiln::ir::Graph g;
  try {
    g = kiln::ir::parse(text);
  } catch (const kiln::Error&) {
    return 0;  // rejected with a message: fine
  }
  const std::string once = kiln::ir::print(g);
  const kiln::ir::Graph again = kiln::ir::parse(once);  // must not throw
  if (kiln::ir::print(again) != once) __builtin_trap();
  try {
    kiln::ir::verify(g);
  } catch (const kiln::Error&) {
  }
  return 0;
}
