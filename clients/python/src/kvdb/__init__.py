"""Python client for KvDb, the database for LLM attention KV caches.

>>> import numpy as np, kvdb
>>> with kvdb.KvDbClient("http://127.0.0.1:50051") as client:            # doctest: +SKIP
...     client.create_model("m", num_layers=2, num_query_heads=8, num_kv_heads=2, head_dim=64, dtype="bf16")
...     ctx = client.create_context("m")
...     client.append(ctx.id, token_ids, [(k0, v0), (k1, v1)], dtype="bf16")  # float32 in, stored as bf16
...     part = client.attend(ctx.id, 0, queries, epsilon=0.05)               # AUTO within 5 % rel-L2
...     full = kvdb.merge(part, local_window_partial)                        # LSE merge

Generated messages and stubs live in ``kvdb.v1`` (``kvdb.v1.contexts_pb2`` ...).
"""

from kvdb._requests import DEFAULT_CHUNK_TOKENS, KvChunk, LayerKv, attend_request, plan_message
from kvdb.aio import AsyncAppendStream, AsyncKvDbClient
from kvdb.client import AppendStream, KvDbClient
from kvdb.dtypes import DType, as_dtype, bf16_to_f32, convert, dtype_of, f32_to_bf16, from_tensor, to_float32, to_tensor
from kvdb.errors import (AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, KvDbError, NotFoundError,
                         PermissionDeniedError, ResourceExhaustedError, UnauthenticatedError, UnavailableError)
from kvdb.partial import AttentionPartial, merge
from kvdb.v1.attention_pb2 import Plan

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError", "AppendStream", "AsyncAppendStream", "AsyncKvDbClient", "AttentionPartial", "DEFAULT_CHUNK_TOKENS",
    "DType", "FailedPreconditionError", "InvalidArgumentError", "KvChunk", "KvDbClient", "KvDbError", "LayerKv",
    "NotFoundError", "PermissionDeniedError", "Plan", "ResourceExhaustedError", "UnauthenticatedError", "UnavailableError",
    "as_dtype", "attend_request", "bf16_to_f32", "convert", "dtype_of", "f32_to_bf16", "from_tensor", "merge",
    "plan_message", "to_float32", "to_tensor",
]
