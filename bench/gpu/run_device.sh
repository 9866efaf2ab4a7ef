#!/usr/bin/env bash
# KvDb GPU check and benchmark, run ON the device machine (CUDA nvcc + PyTorch, no .NET SDK).
#   bash bench/gpu/run_device.sh [OUT_DIR]         (OUT_DIR defaults to $OUT, else /tmp/kvdb-gpu)
# Run from the repository root or from a copy made by bench/gpu/stage_device.sh, which holds:
#   src/Kernels/native/cuda/            CUDA sources and build.sh
#   bench/gpu/sdpa_reference.py         PyTorch SDPA timing + parity of the same kernel through ctypes
#   artifacts/gpurunner/KvDb.GpuRunner  the self-contained C# runner (dotnet publish, see stage_device.sh)
# Steps: build libkvdbcuda.so (nvcc, sm_90) -> PyTorch reference -> runner --parity -> runner --bench -> runner --store
# (KVDB_GPU_STORE=0 skips it). Writes build.log, sdpa.jsonl, sdpa.err, parity.jsonl, bench.jsonl, store.jsonl, runner.log, device.txt to OUT_DIR
# and prints a summary last.
set -uo pipefail
out=${1:-${OUT:-/tmp/kvdb-gpu}}
mkdir -p "$out"
build=/tmp/kvdbcuda-build
contexts=${KVDB_GPU_CONTEXTS:-32768,131072,1048576}

{ nvidia-smi --query-gpu=name,memory.total,clocks.sm,clocks.max.sm,clocks.mem,driver_version --format=csv; nvcc --version | tail -2; } >"$out/device.txt" 2>&1
cat "$out/device.txt"

if ! bash src/Kernels/native/cuda/build.sh "$build" >"$out/build.log" 2>&1; then
  cat "$out/build.log"
  echo "run_device.sh: build failed"
  exit 1
fi
grep -E "warning|spill|registers|built" "$out/build.log" | grep -B1 -E "attention_kernel|spill|warning|built" | head -40
export KVDB_CUDA_LIBRARY=$build/libkvdbcuda.so

# KVDB_GPU_SDPA=0 skips the PyTorch reference (kernel-only iterations; no vs_sdpa fields then).
if [ "${KVDB_GPU_SDPA:-1}" != 0 ]; then
  echo "=== PyTorch SDPA reference"
  PYTHONUNBUFFERED=1 timeout 220 python3 bench/gpu/sdpa_reference.py --lib "$KVDB_CUDA_LIBRARY" --contexts "${KVDB_SDPA_CONTEXTS:-32768,131072,524288,1048576}" \
    --out "$out/sdpa.jsonl" >/dev/null 2>"$out/sdpa.err"
  echo "sdpa rc=$?"
fi

runner=artifacts/gpurunner/KvDb.GpuRunner
chmod +x "$runner" 2>/dev/null
# Each attention variant (0 = register pipeline, 1 = cp.async ring) gets the parity cases and the benchmark;
# the device line of each run names its variant.
for variant in ${KVDB_GPU_VARIANTS:-0 1}; do
  echo "=== runner --parity (variant $variant)"
  KVDB_CUDA_ATTN_VARIANT=$variant timeout 120 "$runner" --parity --out "$out/parity.jsonl" >>"$out/runner.log" 2>&1
  echo "parity rc=$?"
  echo "=== runner --bench (variant $variant)"
  KVDB_CUDA_ATTN_VARIANT=$variant timeout 200 "$runner" --bench --contexts "$contexts" ${KVDB_GPU_BENCH_ARGS:-} --sdpa "$out/sdpa.jsonl" --out "$out/bench.jsonl" >>"$out/runner.log" 2>&1
  echo "bench rc=$?"
done

# The store's GPU tier: promotion/eviction/demotion parity through the executor, and exact attention through
# the store vs the raw backend at 128K tokens (store_gpu_exact).
if [ "${KVDB_GPU_STORE:-1}" != 0 ]; then
  echo "=== runner --store"
  timeout 300 "$runner" --store ${KVDB_GPU_STORE_ARGS:-} --out "$out/store.jsonl" >>"$out/runner.log" 2>&1
  echo "store rc=$?"
fi

# AUTO on the device (kvdb_auto.cu): the PyTorch-side parity/quality/timing harness against SDPA in the same process,
# then the C# path (KvDb's own centroid index, GpuAutoAttention) at KVDB_GPU_AUTO_CTX tokens. KVDB_GPU_AUTO=0 skips both.
if [ "${KVDB_GPU_AUTO:-1}" != 0 ]; then
  echo "=== auto_reference.py"
  (cd bench/gpu && PYTHONUNBUFFERED=1 timeout 300 python3 auto_reference.py --lib "$KVDB_CUDA_LIBRARY" --contexts "${KVDB_GPU_AUTO_CTX:-131072,1048576}" \
    --out "$out/auto.jsonl" >/dev/null 2>"$out/auto.err")
  echo "auto_reference rc=$?"
  echo "=== runner --auto"
  timeout 400 "$runner" --auto --auto-ctx "${KVDB_GPU_AUTO_CTX:-131072,1048576}" --out "$out/auto-runner.jsonl" >>"$out/runner.log" 2>&1
  echo "auto rc=$?"
fi

echo "=== summary"
tail -5 "$out/sdpa.err"
grep -h '"kind": "reference"\|"kind": "splits"' "$out/sdpa.jsonl" 2>/dev/null
grep -h '"pass":false' "$out/parity.jsonl" "$out/bench.jsonl" 2>/dev/null | head -20
echo "parity: $(grep -c '"pass":true' "$out/parity.jsonl" 2>/dev/null) passed, $(grep -c '"pass":false' "$out/parity.jsonl" 2>/dev/null) failed"
grep -v '"kind":"parity"\|layout_check\|batch_check' "$out/bench.jsonl" 2>/dev/null
grep -h '"batch_check"' "$out/bench.jsonl" 2>/dev/null | grep -c '"pass":true' | sed 's/^/batch checks passed: /' 
grep -h '"kind":"parity"' "$out/bench.jsonl" 2>/dev/null | cut -c1-160
echo "store checks: $(grep -c '"kind":"store_parity".*"pass":true' "$out/store.jsonl" 2>/dev/null) passed, $(grep -c '"kind":"store_parity".*"pass":false' "$out/store.jsonl" 2>/dev/null) failed"
grep -h '"pass":false' "$out/store.jsonl" 2>/dev/null | cut -c1-400
grep -h '"kernel":"store_gpu_exact"' "$out/store.jsonl" 2>/dev/null
tail -6 "$out/auto.err" 2>/dev/null
grep -h '"kind": "auto' "$out/auto.jsonl" 2>/dev/null | cut -c1-600
grep -h '"kind":"auto' "$out/auto-runner.jsonl" 2>/dev/null | cut -c1-600
grep -h "gpurunner:" "$out/runner.log"
