#!/usr/bin/env bash
# Installs the Python client the way a user does (pip install, which generates the stubs from proto/) into
# clients/python/.venv and runs its pytest tests against a real server: the Release build of src/Cli
# (`dotnet build KvDb.sln -c Release` first). Arguments go to pytest (kvdb.sh passes --junitxml).
# No network: Debian's python3-grpcio, python3-protobuf, python3-numpy, python3-pytest, protobuf-compiler and
# protobuf-compiler-grpc are installed with apt-get when missing (as root), and the venv sees them (--system-site-packages).
set -euo pipefail
cd "$(dirname "$0")"
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)

have_deps() {
  "$PY" -c "import grpc, google.protobuf, numpy, pytest, setuptools, wheel, venv, ensurepip" 2>/dev/null \
    && command -v protoc >/dev/null && command -v grpc_python_plugin >/dev/null
}
if ! have_deps; then
  if command -v apt-get >/dev/null && [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
      python3-setuptools python3-wheel python3-grpcio python3-protobuf python3-numpy python3-pytest \
      protobuf-compiler protobuf-compiler-grpc >/dev/null \
      || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
           python3-venv python3-pip python3-setuptools python3-wheel python3-grpcio python3-protobuf python3-numpy \
           python3-pytest protobuf-compiler protobuf-compiler-grpc >/dev/null; }
    PY=/usr/bin/python3
  fi
  have_deps || { echo "clients/python/test.sh: python3-grpcio, python3-numpy, python3-pytest, protobuf-compiler, protobuf-compiler-grpc are needed" >&2; exit 2; }
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import grpc, numpy, pytest" 2>/dev/null; then
  rm -rf .venv
  "$PY" -m venv --system-site-packages .venv
fi
# In-tree build without build isolation: no package index is needed (setuptools and wheel come from the system).
.venv/bin/python -m pip install --quiet --no-index --no-build-isolation . >/dev/null
rm -rf build
# From the tests' directory, so the installed package (not src/) is what is imported.
cd tests
exec ../.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
