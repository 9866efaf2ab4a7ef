#!/usr/bin/env bash
# Builds a minimal Debian root image without any registry:
#   debootstrap --variant=minbase bookworm ROOT <the apt mirror of this machine>  |  tar | docker import
# Usage: deploy/base-image.sh [NAME [PACKAGE...]]
#   NAME     image name (default kvdb-base); PACKAGE... extra Debian packages (default: KvDb's runtime dependencies)
# Prints the image reference NAME:<hash> on stdout. The tag is a content hash of the inputs (this script, the suite,
# the mirror, the package list), so an image with that tag is reused as it is: a second run costs a `docker image inspect`.
# NAME:latest points at the newest build too.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

name="${1:-kvdb-base}"
shift || true
if [ $# -gt 0 ]; then
  packages=("$@")
else
  # Runtime dependencies of the self-contained server: libssl3 (TLS through .NET's OpenSSL shim), and what the Faiss
  # shim libkvfaiss.so links dynamically (libfaiss itself is linked statically): OpenBLAS/LAPACK, OpenMP, libstdc++.
  # No ICU: the build sets InvariantGlobalization.
  packages=(libssl3 libopenblas0-pthread liblapack3 libgomp1 libstdc++6)
fi
suite=bookworm

mirror_url() {
  # The first "URIs:" of the deb822 sources (Debian 12's layout), else the first "deb" line of sources.list.
  local uri=""
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    if grep -qE "^Suites:.*\b${suite}\b" "$f"; then
      uri=$(awk '/^URIs:/ { print $2; exit }' "$f")
      [ -n "$uri" ] && break
    fi
  done
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $2 !~ /^\[/ { print $2; exit } $1 == "deb" { print $3; exit }' /etc/apt/sources.list)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

mirror="${KVDB_DEBIAN_MIRROR:-$(mirror_url)}"
hash=$( { cat "$here/base-image.sh"; echo "$suite"; echo "$mirror"; printf '%s\n' "${packages[@]}"; } | sha256sum | cut -c1-16)
tag="$name:$hash"

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base-image: $tag exists, reused" >&2
  echo "$tag"
  exit 0
fi

root=$(mktemp -d /var/tmp/kvdb-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
start=$(date +%s)
echo "base-image: debootstrap --variant=minbase $suite from $mirror (+ ${packages[*]})" >&2
include=$(IFS=,; echo "${packages[*]}")
if ! debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" > "$root.log" 2>&1; then
  tail -20 "$root.log" >&2
  rm -f "$root.log"
  exit 1
fi
rm -f "$root.log"
# Smaller and reproducible enough: no package caches, lists, docs, man pages or locales.
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* "$root"/usr/share/man/* \
  "$root"/usr/share/info/* "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/*
find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} + 2>/dev/null || true
tar --numeric-owner -C "$root" -c . | docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
  -c 'CMD ["/bin/bash"]' \
  -m "debootstrap --variant=minbase $suite + ${packages[*]}" - "$tag" >/dev/null
docker tag "$tag" "$name:latest"
echo "base-image: built $tag in $(( $(date +%s) - start ))s" >&2
echo "$tag"
