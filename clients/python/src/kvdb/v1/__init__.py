"""Generated protobuf and gRPC modules of ``proto/kvdb/v1`` (``kvdb.v1.contexts_pb2``, ``kvdb.v1.contexts_pb2_grpc``, ...).

The modules are produced from the repository's ``proto/`` directory when the package is built (``pip install``) or by
``clients/python/generate.sh``; they are not committed. protoc's own import paths (``from kvdb.v1 import tensor_pb2``)
resolve to this package, which is why the client package is called ``kvdb``.
"""
