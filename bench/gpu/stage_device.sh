#!/usr/bin/env bash
# Stages what bench/gpu/run_device.sh needs into DEST (default: .device-carry at the repo root), for
# machines that only receive a carried folder: the CUDA sources, this folder, and the C# runner
# published self-contained and trimmed (the device has no .NET SDK; about 25 MB).
#   bash bench/gpu/stage_device.sh [DEST]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dest=${1:-$root/.device-carry}
rm -rf "$dest"
mkdir -p "$dest/src/Kernels/native/cuda" "$dest/bench/gpu" "$dest/artifacts"
cp "$root"/src/Kernels/native/cuda/*.{cu,cuh,h,sh,txt} "$dest/src/Kernels/native/cuda/"
cp "$root"/bench/gpu/*.{py,sh} "$dest/bench/gpu/"
dotnet publish "$root/bench/KvDb.GpuRunner" -c Release -r linux-x64 --self-contained -p:PublishTrimmed=true \
  -o "$dest/artifacts/gpurunner" -v quiet -nologo
rm -f "$dest"/artifacts/gpurunner/*.pdb
du -sh "$dest"
