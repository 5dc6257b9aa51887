#!/usr/bin/env bash
# Builds what scripts/gpu-check.sh runs (CUDA on, generic x86-64 code) and packs it, with
# every shared library it needs except glibc's and CUDA's, into one file that a GPU machine
# without Kiln's build dependencies can run: scripts/gpu-check.sh --bundle FILE.
# Prints the bundle's path (build-gpu/gpu-bundle.tar.xz).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
kiln_install_deps xz-utils
BUILD=${KILN_BUILD_DIR:-$KILN_ROOT/build-gpu}
kiln_configure "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKILN_CUDA=ON -DKILN_NATIVE=OFF > /dev/null
cmake --build "$BUILD" -j"$KILN_JOBS" --target test_cuda test_cuda_index test_cuda_nn test_jit_ptx \
  bench_cuda > /dev/null
STAGE=$(mktemp -d)
mkdir -p "$STAGE/bin" "$STAGE/lib"
for t in test/test_cuda test/test_cuda_index test/test_cuda_nn test/test_jit_ptx bench/bench_cuda; do
  cp "$BUILD/$t" "$STAGE/bin/"
done
strip --strip-unneeded "$STAGE"/bin/*
for f in "$STAGE"/bin/*; do
  ldd "$f" | awk '/=> \// {print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so* | libm.so* | libdl.so* | librt.so* | libpthread.so* | ld-linux* | libcuda*.so* | \
      libcublas*.so* | libcudart*.so*) ;;
    *) cp -L "$lib" "$STAGE/lib/" ;;
  esac
done
strip --strip-unneeded "$STAGE"/lib/libkiln.so* 2>/dev/null || true
tar -cf - -C "$STAGE" bin lib | xz -T"$KILN_JOBS" -6 > "$BUILD/gpu-bundle.tar.xz"
rm -rf "$STAGE"
echo "$BUILD/gpu-bundle.tar.xz"
