#!/usr/bin/env bash
# Builds and runs one of Kiln's fuzzers for N minutes.
#   scripts/fuzz.sh ir_parser 10        # libFuzzer (clang from Debian): tracer/fuzz_ir_parser.cpp
#   scripts/fuzz.sh saved_function 10   # libFuzzer: tracer/fuzz_saved_function.cpp
#   scripts/fuzz.sh jit 10 [SEED]       # test/jit_fuzz_main.cpp: random programs compiled by the
#                                       # JIT against the interpreter, seeds from SEED (default:
#                                       # from the clock; ctest's test_jit_fuzz runs 0..299)
# libFuzzer targets print libFuzzer's summary (executions, corpus size) and leave crashes as
# crash-* files; jit prints each defect (seed, reduced program, IR), the programs run and the
# failing seeds, and exits 1 when it found one.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
target=${1:?usage: scripts/fuzz.sh ir_parser|saved_function|jit MINUTES}
minutes=${2:-10}
BUILD=${KILN_BUILD_DIR:-$KILN_ROOT/build}
if [ "$target" = jit ]; then
  kiln_install_deps
  kiln_configure "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKILN_BUILD_TESTS=ON >/dev/null
  cmake --build "$BUILD" -j"$KILN_JOBS" --target jit_fuzz
  exec "$BUILD/test/jit_fuzz" "$minutes" ${3:+"$3"}
fi
kiln_install_deps clang
kiln_configure "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD" -j"$KILN_JOBS" --target kiln
cd "$KILN_ROOT"
case "$target" in
  ir_parser) extra=(tracer/ir_text.cpp tracer/verify.cpp) ;;
  saved_function)
    extra=(tracer/saved_function.cpp tracer/json.cpp tracer/ir_text.cpp tracer/verify.cpp) ;;
  *) echo "unknown target $target" >&2; exit 2 ;;
esac
out="$BUILD/fuzz_$target"
clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I"$BUILD/include" \
  "tracer/fuzz_$target.cpp" "${extra[@]}" -L"$BUILD" -lkiln -lfmt \
  -Wl,-rpath,"$BUILD" -o "$out"
corpus="$BUILD/fuzz_corpus_$target"
mkdir -p "$corpus"
if [ "$target" = ir_parser ] && [ -z "$(ls -A "$corpus")" ]; then
  cat >"$corpus/seed.ir" <<'IR'
func @f(%0: f32[?,4], %1: f32[]) -> (f32[?,4], f32[]) {
  %2 = read_variable() {var = 0} : f32[4]
  %3 = add(%0, %2) : f32[?,4]
  %4 = greater(%1, %1) : bool[]
  %5 = cond(%4, %3) {then_inputs = 1} : f32[?,4] regions {
    func @then(%0: f32[?,4]) -> (f32[?,4]) {
      %1 = exp(%0) : f32[?,4]
      return %1
    }
    func @else() -> (f32[?,4]) {
      %0 = constant() {index = 0} : f32[?,4]
      return %0
    }
  }
  %6 = reduce_sum(%5) {axes = [0, 1], keepdims = false} : f32[]
  assign_variable(%2) {var = 0}
  return %5, %6
}
variables:
  0 "dense/bias" f32[4]
constants:
  0 f32[2] = [1.5, -2.0]
IR
fi
if [ "$target" = saved_function ] && [ -z "$(ls -A "$corpus")" ] &&
  [ -d "$BUILD/test/saved_bundle" ]; then
  # Seeds: the bundle test_saved_function writes ("\0" + safetensors, "\1" + manifest).
  { printf '\0'; cat "$BUILD/test/saved_bundle/variables.safetensors"; } >"$corpus/seed_vars"
  { printf '\1'; cat "$BUILD/test/saved_bundle/manifest.json"; } >"$corpus/seed_manifest"
fi
ASAN_OPTIONS=detect_leaks=0 "$out" -max_total_time=$((minutes * 60)) -max_len=4096 \
  -print_final_stats=1 "$corpus" 2>&1 | tail -25
