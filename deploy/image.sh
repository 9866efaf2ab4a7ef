#!/usr/bin/env bash
# Builds the KvDb server image (./kvdb.sh image runs this).
# Usage: deploy/image.sh [--no-latest]
#   1. ensures Docker (deploy/docker-env.sh: installs docker.io/debootstrap, starts dockerd when needed)
#   2. the base image kvdb-base:<hash> (deploy/base-image.sh; reused when its inputs did not change)
#   3. a self-contained `dotnet publish` of src/Cli for linux-x64 (+ the Faiss shim when it builds) and `docker build`
# The result is tagged kvdb:src-<hash>, a content hash of every input (sources, project files, deploy/, the shim, the
# SDK version, the base tag), and kvdb:latest (unless --no-latest). When kvdb:src-<hash> exists, step 3 is skipped:
# a rerun on unchanged sources costs a few seconds. Prints the kvdb:src-<hash> reference on stdout, logs on stderr.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1
latest=1
[ "${1:-}" = "--no-latest" ] && latest=0

# shellcheck source=deploy/docker-env.sh
source deploy/docker-env.sh
ensure_docker
base=$(bash deploy/base-image.sh)

shim=src/Index/native/build/libkvfaiss.so
if [ ! -f "$shim" ]; then
  bash src/Index/native/build.sh >&2 || echo "image: the Faiss shim did not build; the image has no faiss index family" >&2
fi

input_files() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -co --exclude-standard -- src proto deploy Directory.Build.props Directory.Packages.props
  else # not a git checkout (e.g. an unpacked tarball): every file but build outputs
    find src proto deploy Directory.Build.props Directory.Packages.props -type f \
      -not -path '*/bin/*' -not -path '*/obj/*' -not -path '*/native/build/*' -not -path 'deploy/.build/*'
  fi
}

source_hash() {
  {
    input_files \
      | grep -v -e '^deploy/compose' -e '^deploy/README' -e '^deploy/prometheus' -e '^deploy/grafana/' \
      | LC_ALL=C sort | while IFS= read -r f; do [ -f "$f" ] && sha256sum "$f"; done
    [ -f "$shim" ] && sha256sum "$shim"
    dotnet --version
    echo "$base"
  } | sha256sum | cut -c1-16
}
ref="kvdb:src-$(source_hash)"

if docker image inspect "$ref" >/dev/null 2>&1; then
  echo "image: $ref exists, reused" >&2
else
  start=$(date +%s)
  ctx=deploy/.build
  rm -rf "$ctx"
  mkdir -p "$ctx"
  echo "image: dotnet publish src/Cli (linux-x64, self-contained)" >&2
  dotnet publish src/Cli -c Release -r linux-x64 --self-contained -p:PublishTrimmed=false -p:DebugType=none -v quiet -nologo \
    -o "$ctx/publish" >&2
  if [ -f "$shim" ]; then cp "$shim" "$ctx/publish/"; fi
  # The runtime's LTTng trace provider needs liblttng-ust, which the image leaves out; without the file nothing tries.
  rm -f "$ctx/publish/libcoreclrtraceptprovider.so"
  cp deploy/healthcheck.sh "$ctx/healthcheck.sh"
  echo "image: docker build (FROM $base)" >&2
  docker build -q --network host --build-arg "BASE=$base" -f deploy/Dockerfile -t "$ref" \
    --label "org.opencontainers.image.source-hash=${ref#kvdb:src-}" \
    --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" "$ctx" >&2
  rm -rf "$ctx"
  echo "image: built $ref in $(( $(date +%s) - start ))s, $(docker image inspect -f '{{.Size}}' "$ref" | awk '{ printf "%.0f MB", $1 / 1e6 }')" >&2
fi
if [ "$latest" -eq 1 ]; then
  docker tag "$ref" kvdb:latest
fi
echo "$ref"
