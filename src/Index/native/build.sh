#!/usr/bin/env bash
# Builds src/Index/native/build/libkvfaiss.so (the Faiss baseline shim). Installs Debian's
# libfaiss-dev / libopenblas-dev first when they are missing (needs root and the Debian mirror).
# The test and bench projects copy the library next to their assemblies when it exists.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ ! -f /usr/lib/x86_64-linux-gnu/libfaiss.a ] || ! ldconfig -p | grep -q libopenblas; then
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q libfaiss-dev libopenblas-dev
fi
if command -v cmake >/dev/null 2>&1; then
  cmake -S "$here" -B "$here/build" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$here/build" -j "$(nproc)"
else
  mkdir -p "$here/build"
  g++ -O2 -fPIC -shared -std=c++17 "$here/faiss_shim.cpp" -o "$here/build/libkvfaiss.so" \
    /usr/lib/x86_64-linux-gnu/libfaiss.a -lopenblas -llapack -fopenmp
fi
echo "built $here/build/libkvfaiss.so"
