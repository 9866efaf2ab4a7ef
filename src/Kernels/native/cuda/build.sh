#!/usr/bin/env bash
# Builds libkvdbcuda.so, the CUDA backend of src/Kernels, with nvcc (no CMake needed):
#   bash src/Kernels/native/cuda/build.sh [OUT_DIR]        (default OUT_DIR: src/Kernels/native/cuda/build)
# KVDB_CUDA_ARCHS="90" (default; space-separated compute capabilities, e.g. "80 90") picks the targets.
# The translation units compile in parallel; ptxas resource reports land in OUT_DIR/*.log and on stdout.
# Without nvcc it exits 1 and KvDb runs on the CPU kernels (CudaRuntime.IsAvailable is false).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/build}
mkdir -p "$out"
NVCC=${NVCC:-nvcc}
if ! command -v "$NVCC" >/dev/null 2>&1; then
  echo "build.sh: $NVCC not found; the CUDA backend stays off" >&2
  exit 1
fi
gencode=()
for a in ${KVDB_CUDA_ARCHS:-90}; do gencode+=("-gencode=arch=compute_$a,code=sm_$a"); done
flags=(-O3 -std=c++17 -lineinfo -Xcompiler -fPIC -Xcompiler -fvisibility=hidden -Xptxas -v)
pids=()
units=(kvdb_attention kvdb_attention_batch kvdb_score kvdb_auto kvdb_runtime)
for unit in "${units[@]}"; do
  "$NVCC" "${flags[@]}" "${gencode[@]}" -c "$here/$unit.cu" -o "$out/$unit.o" >"$out/$unit.log" 2>&1 &
  pids+=($!)
done
rc=0
linked=()
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    if [ "${units[$i]}" = kvdb_auto ]; then
      # Optional unit: AUTO on the device. Without it the library keeps every other kernel.
      echo "build.sh: kvdb_auto.cu failed; the library is built without AUTO on the device" >&2
      continue
    fi
    echo "build.sh: ${units[$i]}.cu failed" >&2
    rc=1
  else
    linked+=("${units[$i]}")
  fi
done
for unit in "${units[@]}"; do
  echo "=== $unit.cu"
  # Keep the report short: errors, warnings, and one resource line per kernel.
  grep -E "error|warning|Compiling entry|registers|spill" "$out/$unit.log" || true
done
[ "$rc" -eq 0 ] || exit 1
objects=()
for unit in "${linked[@]}"; do objects+=("$out/$unit.o"); done
"$NVCC" -shared "${gencode[@]}" "${objects[@]}" -o "$out/libkvdbcuda.so" 2>&1
echo "build.sh: built $out/libkvdbcuda.so"
