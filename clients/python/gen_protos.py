"""Generates the kvdb.v1 protobuf/gRPC modules from proto/kvdb/v1/*.proto (used by setup.py and generate.sh).

Compilers, in order:
1. ``python3 -m grpc_tools.protoc`` (grpcio-tools) when its protoc understands proto3 ``optional`` (protoc >= 3.15);
2. ``protoc`` with ``grpc_python_plugin`` (Debian: protobuf-compiler, protobuf-compiler-grpc), since Debian's
   python3-grpc-tools bundles protoc 3.5, which rejects the ``optional`` fields of admin.proto and contexts.proto.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def find_proto_dir() -> str:
    """The directory holding kvdb/v1/*.proto: $KVDB_PROTO_DIR, ./proto (a vendored copy), or the repository's proto/."""
    candidates = [os.environ.get("KVDB_PROTO_DIR", ""), os.path.join(HERE, "proto"), os.path.join(HERE, "..", "..", "proto")]
    for c in candidates:
        if c and glob.glob(os.path.join(c, "kvdb", "v1", "*.proto")):
            return os.path.abspath(c)
    raise FileNotFoundError("proto/kvdb/v1/*.proto not found; set KVDB_PROTO_DIR to the repository's proto/ directory")


def _grpc_tools(proto_dir: str, out_dir: str, protos: list[str]) -> bool:
    try:
        from grpc_tools import protoc  # type: ignore[import-not-found]
    except ImportError:
        return False
    args = ["grpc_tools.protoc", f"-I{proto_dir}", f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}", *protos]
    # Run it in a child so that its complaints (an old protoc) do not end this process and stay quiet.
    code = subprocess.run([sys.executable, "-c", "import sys; from grpc_tools import protoc; sys.exit(protoc.main(sys.argv[1:]))", *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    return code == 0


def _system_protoc(proto_dir: str, out_dir: str, protos: list[str]) -> bool:
    protoc = shutil.which("protoc")
    plugin = shutil.which("grpc_python_plugin")
    if protoc is None or plugin is None:
        return False
    cmd = [protoc, f"-I{proto_dir}", f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}",
           f"--plugin=protoc-gen-grpc_python={plugin}", *protos]
    return subprocess.run(cmd).returncode == 0


def generate(out_dir: str, proto_dir: str | None = None) -> list[str]:
    """Writes kvdb/v1/*_pb2.py, *_pb2.pyi and *_pb2_grpc.py under out_dir (the directory that holds the kvdb package)."""
    proto_dir = proto_dir or find_proto_dir()
    protos = sorted(glob.glob(os.path.join(proto_dir, "kvdb", "v1", "*.proto")))
    os.makedirs(os.path.join(out_dir, "kvdb", "v1"), exist_ok=True)
    if not (_grpc_tools(proto_dir, out_dir, protos) or _system_protoc(proto_dir, out_dir, protos)):
        raise RuntimeError("could not compile proto/kvdb/v1: install grpcio-tools with a protoc >= 3.15, or Debian's "
                           "protobuf-compiler and protobuf-compiler-grpc")
    init = os.path.join(out_dir, "kvdb", "v1", "__init__.py")
    if not os.path.exists(init):
        shutil.copyfile(os.path.join(HERE, "src", "kvdb", "v1", "__init__.py"), init)
    return sorted(glob.glob(os.path.join(out_dir, "kvdb", "v1", "*_pb2*.py*")))


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "src")
    for f in generate(target):
        print(os.path.relpath(f, target))
