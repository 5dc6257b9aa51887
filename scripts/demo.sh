#!/usr/bin/env bash
# Installs what is missing, builds Kiln (Release) and runs the main example.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
kiln_install_deps
BUILD=${KILN_BUILD_DIR:-$KILN_ROOT/build}
kiln_configure "$BUILD" -DCMAKE_BUILD_TYPE=Release
cmake --build "$BUILD" -j"$KILN_JOBS" --target fashion_mnist_mlp
"$BUILD/fashion_mnist_mlp" "$@"
