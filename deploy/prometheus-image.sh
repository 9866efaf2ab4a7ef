#!/usr/bin/env bash
# Builds kvdb-prometheus:latest for deploy/compose.yaml: Debian's `prometheus` package in a debootstrap minbase root
# (deploy/base-image.sh, cached by content hash), plus deploy/prometheus/Dockerfile. Prints the image reference.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# shellcheck source=deploy/docker-env.sh
source deploy/docker-env.sh
ensure_docker
base=$(bash deploy/base-image.sh kvdb-prometheus-base prometheus)
docker build -q --build-arg "BASE=$base" -f deploy/prometheus/Dockerfile -t kvdb-prometheus:latest deploy/prometheus >&2
echo kvdb-prometheus:latest
