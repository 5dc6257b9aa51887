#!/usr/bin/env bash
# Installs what is missing, builds Kiln (Release) with its tests and runs the whole suite.
# KILN_SANITIZE=1 builds and tests the ASan+UBSan configuration in build-asan instead.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
kiln_install_deps
if [ "${KILN_SANITIZE:-0}" = "1" ]; then
  BUILD=${KILN_BUILD_DIR:-$KILN_ROOT/build-asan}
  # Without the CUDA backend: ASan's shadow memory and the CUDA driver's mappings collide.
  kiln_configure "$BUILD" -DCMAKE_BUILD_TYPE=Debug -DKILN_SANITIZE=ON -DKILN_BUILD_BENCH=OFF \
    -DKILN_CUDA=OFF
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
else
  BUILD=${KILN_BUILD_DIR:-$KILN_ROOT/build}
  kiln_configure "$BUILD" -DCMAKE_BUILD_TYPE=Release
fi
cmake --build "$BUILD" -j"$KILN_JOBS"
cd "$BUILD"
ctest --output-on-failure -j1
