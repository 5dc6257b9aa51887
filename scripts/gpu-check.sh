#!/usr/bin/env bash
# The CUDA backend's check on a machine with an NVIDIA GPU: builds with CUDA, runs the GPU
# tests (test_cuda, test_cuda_index, test_cuda_nn, test_jit_ptx) and the GPU benchmarks
# (bench_cuda), and prints a table of the ratios the CUDA issue asks for. Under 8 minutes on
# an H100 machine.
#
#   scripts/gpu-check.sh                   build here (installs what is missing), then run
#   scripts/gpu-check.sh --bundle FILE     run a bundle from scripts/gpu-bundle.sh instead:
#                                          for a GPU machine without Kiln's build dependencies
#
# Writes the logs and the benchmark JSON to $OUT (or build-gpu/out).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$ROOT/build-gpu/out}
mkdir -p "$OUT"

if [ "${1:-}" = "--bundle" ]; then
  BIN=$(mktemp -d)
  tar -xJf "$2" -C "$BIN"
  # The bundle carries everything but glibc and the CUDA libraries, which the machine has.
  CUDA_LIBS=/usr/local/cuda/lib64
  [ -e "$CUDA_LIBS/libcublasLt.so.13" ] ||
    CUDA_LIBS=$(dirname "$(find / -name 'libcublasLt.so.13*' -print -quit 2>/dev/null)")
  export LD_LIBRARY_PATH="$BIN/lib:${CUDA_LIBS}:${LD_LIBRARY_PATH:-}"
  export KILN_LIBDEVICE=${KILN_LIBDEVICE:-$(find / -name libdevice.10.bc -print -quit 2>/dev/null)}
  PTXAS_DIR=$(dirname "$(command -v ptxas || find / -name ptxas -type f -print -quit 2>/dev/null)")
  export PATH="$PTXAS_DIR:$PATH"
else
  source "$ROOT/scripts/common.sh"
  kiln_install_deps
  BUILD=${KILN_BUILD_DIR:-$ROOT/build-gpu}
  kiln_configure "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKILN_CUDA=ON -DKILN_NATIVE=OFF
  cmake --build "$BUILD" -j"$KILN_JOBS" --target test_cuda test_cuda_index test_cuda_nn test_jit_ptx \
    bench_cuda
  BIN=$BUILD
fi
test_bin() { find "$BIN" -name "$1" -type f -perm -u+x -print -quit; }

command -v nvidia-smi > /dev/null && nvidia-smi -L | tee "$OUT/gpu.txt" || true
status=0
for t in test_cuda test_cuda_index test_cuda_nn test_jit_ptx; do
  echo "== $t"
  timeout 150 "$(test_bin "$t")" 2>&1 | tee "$OUT/$t.log" | tail -n 3 || status=1
  grep -q "All tests passed" "$OUT/$t.log" || status=1
done
echo "== bench_cuda"
"$(test_bin bench_cuda)" --benchmark_repetitions=3 --benchmark_report_aggregates_only=true \
  --benchmark_out="$OUT/bench_cuda.json" --benchmark_out_format=json 2>&1 | tee "$OUT/bench_cuda.log" | tail -n 20

python3 - "$OUT/bench_cuda.json" <<'PY'
import json, sys
rows = {b["name"]: b for b in json.load(open(sys.argv[1]))["benchmarks"] if b.get("aggregate_name") == "median"}
def get(prefix, field="real_time"):
    for name, b in rows.items():
        if name.startswith(prefix):
            return b.get(field)
    return None
def ratio(a, b):
    return f"{a / b:.3f}" if a and b else "n/a"
print("\n| benchmark (median of 3) | Kiln | baseline | ratio | target |")
print("|---|---|---|---|---|")
for tf32 in (0, 1):
    k = get(f"BM_cuda_matmul_4096/tf32:{tf32}", "TFLOP/s")
    r = get(f"BM_cublaslt_matmul_4096/tf32:{tf32}", "TFLOP/s")
    label = "TF32" if tf32 else "f32"
    print(f"| matmul 4096² {label}, TFLOP/s vs raw cublasLt | {k or 0:.1f} | {r or 0:.1f} | {ratio(k, r)} | ≥ 0.9 |")
c = get("BM_cuda_chain_256M", "GB/s")
m = get("BM_cuda_copy_256M", "GB/s")
print(f"| chain over f32[256M], GB/s vs device-to-device copy | {c or 0:.0f} | {m or 0:.0f} | {ratio(c, m)} | ≥ 0.75 |")
e = get("BM_cuda_mlp_step/compiled:0")
j = get("BM_cuda_mlp_step/compiled:1")
g = get("BM_cuda_mlp_step/compiled:1", "graph_replays_per_call")
print(f"| MLP train step µs, compiled vs eager (speed-up) | {j or 0:.0f} | {e or 0:.0f} | {ratio(e, j)} | > 1 |")
print(f"| (the compiled step's CUDA Graph replays per call: {g if g is not None else 'n/a'}) | | | | 1 |")
PY
# KILN_GPU_TRIAGE=1: rerun the failing binaries' test cases one at a time (scripts/gpu-triage.sh).
if [ "$status" -ne 0 ] && [ -n "${KILN_GPU_TRIAGE:-}" ]; then
  bash "$ROOT/scripts/gpu-triage.sh" "$BIN"
fi
if grep -q "no CUDA device" "$OUT/test_cuda.log"; then
  echo "gpu-check: no CUDA device was found, so the GPU tests and benchmarks above skipped"
  status=1
fi
exit $status
