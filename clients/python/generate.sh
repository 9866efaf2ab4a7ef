#!/usr/bin/env bash
# Generates src/kvdb/v1/*_pb2*.py(i) from the repository's proto/ (for running from the source tree; `pip install`
# generates them itself). The files are ignored by git.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
"$PY" gen_protos.py src >/dev/null
echo "generated src/kvdb/v1 from $(cd ../.. && pwd)/proto"
