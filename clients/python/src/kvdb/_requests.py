"""Request building and response decoding shared by the sync and asyncio clients."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union, cast

import numpy as np
import numpy.typing as npt

from kvdb.dtypes import DTypeLike, convert, dtype_of, from_tensor, to_tensor
from kvdb.partial import AttentionPartial
from kvdb.v1 import attention_pb2, contexts_pb2, models_pb2, tensor_pb2

DEFAULT_CHUNK_TOKENS = 1024
"""Tokens per AppendKv message: keeps messages well under the server's 64 MiB limit for common shapes."""

KvPair = Tuple[np.ndarray, np.ndarray]
Layers = Union[Mapping[int, KvPair], Iterable[KvPair], KvPair]
"""K/V of several layers: {layer: (keys, values)}, a sequence of (keys, values) for layers 0, 1, ..., or one
(keys, values) pair of stacked arrays [layers, n, num_kv_heads, head_dim]."""

PlanLike = Union[attention_pb2.Plan, str, int, None]
Exclude = Union[Tuple[int, int], range, tensor_pb2.TokenRange, None]

_PLAN_NAMES = {
    "auto": attention_pb2.PLAN_KIND_AUTO,
    "exact": attention_pb2.PLAN_KIND_EXACT,
    "block_top_k": attention_pb2.PLAN_KIND_BLOCK_TOP_K,
    "block": attention_pb2.PLAN_KIND_BLOCK_TOP_K,
    "centroid_top_k": attention_pb2.PLAN_KIND_CENTROID_TOP_K,
    "centroid": attention_pb2.PLAN_KIND_CENTROID_TOP_K,
    "lsh_top_k": attention_pb2.PLAN_KIND_LSH_TOP_K,
    "lsh": attention_pb2.PLAN_KIND_LSH_TOP_K,
    "ann_top_k": attention_pb2.PLAN_KIND_ANN_TOP_K,
    "ann": attention_pb2.PLAN_KIND_ANN_TOP_K,
    "lsh_sampling": attention_pb2.PLAN_KIND_LSH_SAMPLING,
    "dipr": attention_pb2.PLAN_KIND_DIPR,
}


@dataclass(frozen=True)
class KvChunk:
    """One ReadKv chunk: tokens [start, start + len(token_ids)) of one layer; keys/values [n, kv_heads, dim] views."""

    layer: int
    start: int
    token_ids: npt.NDArray[np.int32]
    keys: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class LayerKv:
    """A layer's stored K/V: token ids [n], keys and values [n, num_kv_heads, head_dim] in the model's dtype
    (float32, float16, or uint16 bf16 bits)."""

    token_ids: npt.NDArray[np.int32]
    keys: np.ndarray
    values: np.ndarray


def model_message(name: Union[str, models_pb2.Model], num_layers: int, num_query_heads: int, num_kv_heads: int,
                  head_dim: int, dtype: DTypeLike, block_size: int, softmax_scale: float) -> models_pb2.Model:
    if isinstance(name, models_pb2.Model):
        return name
    from kvdb.dtypes import as_dtype

    return models_pb2.Model(name=name, num_layers=num_layers, num_query_heads=num_query_heads, num_kv_heads=num_kv_heads,
                            head_dim=head_dim, dtype=cast(Any, int(as_dtype(dtype))), block_size=block_size, softmax_scale=softmax_scale)


def plan_message(plan: PlanLike = None, *, epsilon: Optional[float] = None, delta: Optional[float] = None,
                 max_latency_us: Optional[int] = None, budget: Optional[int] = None,
                 beta: Optional[float] = None) -> attention_pb2.Plan:
    """A Plan from a Plan, a PlanKind number or a name ("auto", "exact", "block_top_k", "dipr", ...), plus overrides.

    No plan means AUTO (the server's default); epsilon/delta are AUTO's contract (relative L2 error per query head and
    the probability of exceeding it).
    """
    if isinstance(plan, attention_pb2.Plan):
        msg = attention_pb2.Plan()
        msg.CopyFrom(plan)
    elif plan is None:
        msg = attention_pb2.Plan(kind=attention_pb2.PLAN_KIND_AUTO)
    elif isinstance(plan, str):
        key = plan.lower().removeprefix("plan_kind_")
        if key not in _PLAN_NAMES:
            raise ValueError(f"unknown plan {plan!r}; one of {', '.join(sorted(_PLAN_NAMES))}")
        msg = attention_pb2.Plan(kind=_PLAN_NAMES[key])
    else:
        msg = attention_pb2.Plan(kind=cast(Any, int(plan)))
    if epsilon is not None:
        msg.epsilon = float(epsilon)
    if delta is not None:
        msg.delta = float(delta)
    if max_latency_us is not None:
        msg.max_latency_us = int(max_latency_us)
    if budget is not None:
        msg.budget = int(budget)
    if beta is not None:
        msg.beta = float(beta)
    return msg


def _queries(queries: npt.ArrayLike) -> np.ndarray:
    q = np.asarray(queries)
    if q.ndim == 2:
        q = q[None, ...]
    if q.ndim != 3:
        raise ValueError(f"queries must be [q, num_query_heads, head_dim] (or [num_query_heads, head_dim]); got shape {q.shape}")
    if q.dtype.name != "bfloat16" and q.dtype not in (np.float32, np.float16, np.uint16):
        q = q.astype(np.float32)
    return q


def attend_request(context_id: str, layer: int, queries: npt.ArrayLike, exclude: Exclude = None, plan: PlanLike = None,
                   return_selection: bool = False, **plan_fields: Optional[float]) -> attention_pb2.AttendRequest:
    """An AttendRequest: queries [q, num_query_heads, head_dim] (float32, float16 or uint16 bf16 bits; other floats
    are sent as float32), ``exclude`` a half-open (start, end) token range not to attend."""
    request = attention_pb2.AttendRequest(context_id=context_id, layer=layer, queries=to_tensor(_queries(queries)),
                                          plan=plan_message(plan, **plan_fields),  # type: ignore[arg-type]
                                          return_selection=return_selection)
    if exclude is not None:
        if isinstance(exclude, tensor_pb2.TokenRange):
            start, end = exclude.start, exclude.end
        elif isinstance(exclude, range):
            start, end = exclude.start, exclude.stop
        else:
            start, end = exclude
        if end > start:
            request.exclude.start = int(start)
            request.exclude.end = int(end)
    return request


def to_partial(response: attention_pb2.AttendResponse) -> AttentionPartial:
    """Decodes an AttendResponse: output [q, heads, dim] and lse [q, heads] as read-only float32 views."""
    return AttentionPartial(output=from_tensor(response.output), lse=from_tensor(response.lse), stats=response.stats,
                            selected=np.asarray(response.selected, dtype=np.int64),
                            selection_counts=np.asarray(response.selection_counts, dtype=np.int32))


def _token_ids(token_ids: npt.ArrayLike) -> npt.NDArray[np.int32]:
    ids = np.asarray(token_ids)
    if ids.ndim != 1:
        raise ValueError(f"token_ids must be one-dimensional; got shape {ids.shape}")
    return ids.astype(np.int32, copy=False)


def layer_requests(context_id: str, layer: int, token_ids: npt.ArrayLike, keys: npt.ArrayLike, values: npt.ArrayLike,
                   chunk_tokens: int = DEFAULT_CHUNK_TOKENS, dtype: Optional[DTypeLike] = None) -> Iterator[contexts_pb2.AppendKvRequest]:
    """AppendKv messages for one layer: ``keys``/``values`` [n, num_kv_heads, head_dim] split into chunks of at most
    ``chunk_tokens`` tokens. With ``dtype`` the arrays are converted to it (e.g. float32 to the model's bf16); without,
    they are sent as they are (uint16 = bf16 bits)."""
    if chunk_tokens <= 0:
        raise ValueError("chunk_tokens must be positive")
    ids = _token_ids(token_ids)
    k = np.asarray(keys)
    v = np.asarray(values)
    if dtype is not None:
        k, v = convert(k, dtype), convert(v, dtype)
    if k.ndim != 3 or k.shape != v.shape or k.shape[0] != ids.shape[0]:
        raise ValueError(f"keys and values must both be [n, num_kv_heads, head_dim] with n = len(token_ids) = {ids.shape[0]}; "
                         f"got {k.shape} and {v.shape}")
    dtype_of(k)  # raises early for unsupported dtypes
    for start in range(0, ids.shape[0], chunk_tokens):
        end = min(start + chunk_tokens, ids.shape[0])
        yield contexts_pb2.AppendKvRequest(context_id=context_id, layer=layer, token_ids=ids[start:end].tolist(),
                                           keys=to_tensor(k[start:end]), values=to_tensor(v[start:end]))


def sample_queries_request(context_id: str, layer: int, queries: npt.ArrayLike) -> contexts_pb2.AppendKvRequest:
    """An AppendKv message carrying a layer's sample queries [m, num_query_heads, head_dim] for query-guided indexes."""
    return contexts_pb2.AppendKvRequest(context_id=context_id, layer=layer, sample_queries=to_tensor(_queries(queries)))


def _layer_items(layers: Layers) -> Iterator[Tuple[int, KvPair]]:
    if isinstance(layers, Mapping):
        yield from sorted(layers.items(), key=lambda kv: kv[0])
        return
    if isinstance(layers, tuple) and len(layers) == 2 and all(isinstance(a, np.ndarray) and a.ndim == 4 for a in layers):
        keys, values = layers
        if keys.shape != values.shape:
            raise ValueError(f"stacked keys and values differ in shape: {keys.shape} and {values.shape}")
        for i in range(keys.shape[0]):
            yield i, (keys[i], values[i])
        return
    for i, pair in enumerate(layers):
        yield i, pair  # type: ignore[misc]


def append_requests(context_id: str, token_ids: npt.ArrayLike, layers: Layers, chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
                    dtype: Optional[DTypeLike] = None,
                    sample_queries: Optional[Mapping[int, npt.ArrayLike]] = None) -> Iterator[contexts_pb2.AppendKvRequest]:
    """The AppendKv messages of several layers of the same tokens, layer after layer, built lazily."""
    for layer, (keys, values) in _layer_items(layers):
        yield from layer_requests(context_id, layer, token_ids, keys, values, chunk_tokens, dtype)
        if sample_queries is not None and layer in sample_queries:
            yield sample_queries_request(context_id, layer, sample_queries[layer])


def to_chunk(chunk: contexts_pb2.ReadKvChunk) -> KvChunk:
    return KvChunk(layer=chunk.layer, start=chunk.start, token_ids=np.asarray(chunk.token_ids, dtype=np.int32),
                   keys=from_tensor(chunk.keys), values=from_tensor(chunk.values))


def concat_chunks(chunks: Sequence[KvChunk]) -> LayerKv:
    """One LayerKv from a layer's chunks (a single chunk stays a view; several are concatenated)."""
    if not chunks:
        empty = np.zeros(0, dtype=np.int32)
        return LayerKv(empty, np.zeros((0, 0, 0), dtype=np.float32), np.zeros((0, 0, 0), dtype=np.float32))
    if len(chunks) == 1:
        c = chunks[0]
        return LayerKv(c.token_ids, c.keys, c.values)
    ids: List[np.ndarray] = [c.token_ids for c in chunks]
    return LayerKv(np.concatenate(ids), np.concatenate([c.keys for c in chunks]), np.concatenate([c.values for c in chunks]))


def prefix_request(model: str, namespace: str, token_ids: npt.ArrayLike) -> contexts_pb2.LookupPrefixRequest:
    return contexts_pb2.LookupPrefixRequest(model=model, namespace=namespace, token_ids=_token_ids(token_ids).tolist())


def create_context_request(model: str, namespace: str, id: str, prefix_token_ids: Optional[npt.ArrayLike],
                           ttl_seconds: int) -> contexts_pb2.CreateContextRequest:
    request = contexts_pb2.CreateContextRequest(model=model, namespace=namespace, id=id, ttl_seconds=ttl_seconds)
    if prefix_token_ids is not None:
        request.prefix_token_ids.extend(_token_ids(prefix_token_ids).tolist())
    return request


def update_context_request(id: str, ttl_seconds: Optional[int], pinned: Optional[bool]) -> contexts_pb2.UpdateContextRequest:
    request = contexts_pb2.UpdateContextRequest(id=id)
    if ttl_seconds is not None:
        request.ttl_seconds = int(ttl_seconds)
    if pinned is not None:
        request.pinned = bool(pinned)
    return request


def parse_address(address: str) -> Tuple[str, Optional[bool]]:
    """(host:port target, secure) from "http://h:p" (plain), "https://h:p" (TLS) or "h:p" (None: decided by the caller)."""
    if address.startswith("http://"):
        return address[len("http://"):].rstrip("/"), False
    if address.startswith("https://"):
        return address[len("https://"):].rstrip("/"), True
    return address, None


CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
