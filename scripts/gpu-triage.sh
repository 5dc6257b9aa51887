#!/usr/bin/env bash
# After scripts/gpu-check.sh on a GPU machine: for each GPU test binary whose log does not say
# "All tests passed", runs its test cases one at a time (so a crash or a sticky CUDA error
# costs one case, not the rest), and reruns each failing case under compute-sanitizer where
# the machine has it. Appends everything to $OUT/triage.log; prints one line per case.
#
#   scripts/gpu-triage.sh BIN_DIR     BIN_DIR holds the test binaries (gpu-check's unpacked bundle
#                                     or its build folder)
set -uo pipefail
BIN=$1
OUT=${OUT:-$(pwd)/build-gpu/out}
LOG=$OUT/triage.log
sanitized=0
SAN=$(command -v compute-sanitizer || find / -name compute-sanitizer -type f -print -quit 2>/dev/null)
for t in test_cuda test_cuda_index test_cuda_nn test_jit_ptx; do
  grep -q "All tests passed" "$OUT/$t.log" 2>/dev/null && continue
  exe=$(find "$BIN" -name "$t" -type f -perm -u+x -print -quit)
  [ -n "$exe" ] || continue
  while read -r name; do
    [ -n "$name" ] || continue
    # A Catch2 test spec splits at commas and reads '[' as a tag: escape both.
    filter=${name//,/\\,}
    filter=${filter//[/\\[}
    if timeout 60 "$exe" "$filter" > /tmp/case.log 2>&1; then
      echo "pass  $t: $name"
    else
      echo "FAIL  $t: $name (exit $?)" | tee -a "$LOG"
      tail -n 60 /tmp/case.log >> "$LOG"
      # Under compute-sanitizer: the first two failures only (each can take minutes).
      if [ -n "$SAN" ] && [ $((sanitized++)) -lt 2 ]; then
        echo "-- compute-sanitizer" >> "$LOG"
        timeout 100 "$SAN" --print-limit 8 "$exe" "$filter" 2>&1 | tail -n 80 >> "$LOG"
      fi
    fi
  done < <("$exe" --list-test-names-only 2> /dev/null)
done
