"""The synchronous KvDb client: numpy arrays in and out over the generated gRPC stubs."""

from __future__ import annotations

import queue
from typing import Any, Callable, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import grpc
import numpy as np
import numpy.typing as npt

from kvdb import _requests as rq
from kvdb._requests import DEFAULT_CHUNK_TOKENS, Exclude, KvChunk, LayerKv, Layers, PlanLike
from kvdb.dtypes import DTypeLike
from kvdb.errors import KvDbError
from kvdb.partial import AttentionPartial
from kvdb.v1 import (admin_pb2, admin_pb2_grpc, attention_pb2, attention_pb2_grpc, contexts_pb2, contexts_pb2_grpc,
                     models_pb2, models_pb2_grpc, tenants_pb2, tenants_pb2_grpc)

T = TypeVar("T")


def credentials_metadata(api_key: Optional[str]) -> Tuple[Tuple[str, str], ...]:
    """The call metadata that carries an API key: ``authorization: Bearer KEY`` (none without a key)."""
    return (("authorization", "Bearer " + api_key),) if api_key else ()


def channel_credentials(root_certificates: Optional[bytes], private_key: Optional[bytes],
                        certificate_chain: Optional[bytes]) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(root_certificates=root_certificates, private_key=private_key,
                                        certificate_chain=certificate_chain)


def _target(address: str, root_certificates: Optional[bytes], secure: Optional[bool]) -> Tuple[str, bool]:
    target, scheme_secure = rq.parse_address(address)
    if secure is None:
        secure = scheme_secure if scheme_secure is not None else root_certificates is not None
    return target, bool(secure)


class AppendStream:
    """One AppendKv stream (one transaction): write chunks of any layers in order, then :meth:`complete`.

    The server applies the whole stream or, on any error, none of it. Use it as a context manager; leaving the block
    without :meth:`complete` (e.g. on an exception) cancels the stream, so nothing is stored.
    """

    def __init__(self, client: "KvDbClient", context_id: str, timeout: Optional[float] = None) -> None:
        self._context_id = context_id
        self._queue: "queue.Queue[Optional[contexts_pb2.AppendKvRequest]]" = queue.Queue(maxsize=4)
        self._closed = False
        self._future = client.contexts.AppendKv.future(self._requests(), metadata=client._metadata, timeout=timeout)

    def _requests(self) -> Iterator[contexts_pb2.AppendKvRequest]:
        while True:
            item = self._queue.get()
            if item is None:
                return
            yield item

    def _put(self, item: Optional[contexts_pb2.AppendKvRequest]) -> None:
        while True:
            if self._future.done():
                # The server ended the stream (it refused a message): its status is the error.
                self._result()
                raise KvDbError(grpc.StatusCode.CANCELLED, "the AppendKv stream has ended")
            try:
                self._queue.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def _result(self) -> contexts_pb2.AppendKvResponse:
        try:
            return self._future.result()
        except grpc.RpcError as e:
            raise KvDbError.from_rpc_error(e) from None

    def write(self, layer: int, token_ids: npt.ArrayLike, keys: npt.ArrayLike, values: npt.ArrayLike,
              chunk_tokens: int = DEFAULT_CHUNK_TOKENS, dtype: Optional[DTypeLike] = None) -> None:
        """Writes one layer's tokens (keys/values [n, num_kv_heads, head_dim]) in messages of at most ``chunk_tokens``."""
        for request in rq.layer_requests(self._context_id, layer, token_ids, keys, values, chunk_tokens, dtype):
            self._put(request)

    def write_sample_queries(self, layer: int, queries: npt.ArrayLike) -> None:
        """Sends a layer's sample queries [m, num_query_heads, head_dim] for query-guided indexes (graph, lsh)."""
        self._put(rq.sample_queries_request(self._context_id, layer, queries))

    def complete(self) -> contexts_pb2.AppendKvResponse:
        """Ends the stream and returns the server's acknowledgement (the context's token counts)."""
        if not self._closed:
            self._closed = True
            if not self._future.done():
                self._put(None)
        return self._result()

    def cancel(self) -> None:
        """Abandons the stream: the server stores none of it."""
        self._closed = True
        self._future.cancel()

    def __enter__(self) -> "AppendStream":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None or not self._closed:
            self.cancel()


class KvDbClient:
    """Typed client for a KvDb server: models, contexts, chunked K/V appends and attention, with numpy arrays.

    ``address`` is "http://host:port" (plain), "https://host:port" (TLS) or "host:port" (TLS when certificates are
    given). With ``api_key`` (a tenant's key from ``kvdb tenant create``, or the admin key) every call carries
    ``authorization: Bearer KEY``. Failed calls raise :class:`kvdb.KvDbError` (``.code`` is the gRPC status code).
    The raw generated stubs are ``models``, ``contexts``, ``attention``, ``admin`` and ``tenants``.
    """

    DEFAULT_CHUNK_TOKENS = DEFAULT_CHUNK_TOKENS

    def __init__(self, address: str, api_key: Optional[str] = None, *, root_certificates: Optional[bytes] = None,
                 private_key: Optional[bytes] = None, certificate_chain: Optional[bytes] = None,
                 secure: Optional[bool] = None, timeout: Optional[float] = None,
                 options: Optional[Sequence[Tuple[str, Any]]] = None) -> None:
        target, use_tls = _target(address, root_certificates, secure)
        opts = list(rq.CHANNEL_OPTIONS) + list(options or [])
        if use_tls:
            self._channel = grpc.secure_channel(target, channel_credentials(root_certificates, private_key, certificate_chain), options=opts)
        else:
            self._channel = grpc.insecure_channel(target, options=opts)
        self._metadata = credentials_metadata(api_key)
        self._timeout = timeout
        self.models = models_pb2_grpc.ModelsStub(self._channel)
        self.contexts = contexts_pb2_grpc.ContextsStub(self._channel)
        self.attention = attention_pb2_grpc.AttentionStub(self._channel)
        self.admin = admin_pb2_grpc.AdminStub(self._channel)
        self.tenants = tenants_pb2_grpc.TenantsStub(self._channel)

    # -- plumbing -------------------------------------------------------------------------------------------------

    def _unary(self, method: Callable[..., T], request: Any) -> T:
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as e:
            raise KvDbError.from_rpc_error(e) from None

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "KvDbClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- models ---------------------------------------------------------------------------------------------------

    def create_model(self, name: Union[str, models_pb2.Model], *, num_layers: int = 0, num_query_heads: int = 0,
                     num_kv_heads: int = 0, head_dim: int = 0, dtype: DTypeLike = "bf16", block_size: int = 0,
                     softmax_scale: float = 0.0) -> models_pb2.Model:
        """Declares a model (or re-declares it identically; a different schema under the name is ALREADY_EXISTS)."""
        model = rq.model_message(name, num_layers, num_query_heads, num_kv_heads, head_dim, dtype, block_size, softmax_scale)
        return self._unary(self.models.CreateModel, models_pb2.CreateModelRequest(model=model))

    def get_model(self, name: str) -> models_pb2.Model:
        return self._unary(self.models.GetModel, models_pb2.GetModelRequest(name=name))

    def list_models(self) -> List[models_pb2.Model]:
        return list(self._unary(self.models.ListModels, models_pb2.ListModelsRequest()).models)

    # -- contexts -------------------------------------------------------------------------------------------------

    def create_context(self, model: str, namespace: str = "", id: str = "", prefix_token_ids: Optional[npt.ArrayLike] = None,
                       ttl_seconds: int = 0) -> contexts_pb2.Context:
        """Creates a context, optionally starting from the cached KV of ``prefix_token_ids``; ``ttl_seconds`` > 0 makes
        the server delete it that long after creation."""
        return self._unary(self.contexts.CreateContext, rq.create_context_request(model, namespace, id, prefix_token_ids, ttl_seconds))

    def get_context(self, id: str) -> contexts_pb2.Context:
        return self._unary(self.contexts.GetContext, contexts_pb2.GetContextRequest(id=id))

    def update_context(self, id: str, ttl_seconds: Optional[int] = None, pinned: Optional[bool] = None) -> contexts_pb2.Context:
        """Changes a context's TTL (seconds from now; 0 = never) and/or pin (admin key); None keeps a setting."""
        return self._unary(self.contexts.UpdateContext, rq.update_context_request(id, ttl_seconds, pinned))

    def delete_context(self, id: str) -> bool:
        return self._unary(self.contexts.DeleteContext, contexts_pb2.DeleteContextRequest(id=id)).deleted

    def fork_context(self, id: str, new_id: str = "") -> contexts_pb2.Context:
        """Copies a context's committed KV by reference under ``new_id`` (empty = server-assigned)."""
        return self._unary(self.contexts.ForkContext, contexts_pb2.ForkContextRequest(id=id, new_id=new_id))

    fork = fork_context

    def list_contexts(self, page_size: int = 0, page_token: str = "") -> contexts_pb2.ListContextsResponse:
        """One page of contexts in id order; pass ``next_page_token`` for the next page."""
        return self._unary(self.contexts.ListContexts, contexts_pb2.ListContextsRequest(page_size=page_size, page_token=page_token))

    def iter_contexts(self, page_size: int = 0) -> Iterator[contexts_pb2.Context]:
        """Every context the key can see, page after page."""
        token = ""
        while True:
            page = self.list_contexts(page_size, token)
            yield from page.contexts
            token = page.next_page_token
            if not token:
                return

    def lookup_prefix(self, model: str, namespace: str, token_ids: npt.ArrayLike) -> int:
        """Tokens of the longest cached prefix of ``token_ids`` in the model's namespace."""
        return self._unary(self.contexts.LookupPrefix, rq.prefix_request(model, namespace, token_ids)).num_tokens

    # -- appends --------------------------------------------------------------------------------------------------

    def open_append(self, context_id: str) -> AppendStream:
        """Opens one AppendKv stream (one transaction) for writing chunk by chunk."""
        return AppendStream(self, context_id, self._timeout)

    def append(self, context_id: str, token_ids: npt.ArrayLike, layers: Layers, *, chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
               dtype: Optional[DTypeLike] = None, sample_queries: Optional[Mapping[int, npt.ArrayLike]] = None) -> contexts_pb2.AppendKvResponse:
        """Appends the same tokens to several layers in one stream (one transaction), messages built lazily.

        ``layers``: {layer: (keys, values)}, a sequence of (keys, values) for layers 0.., or stacked arrays
        (keys [L, n, kv_heads, dim], values likewise). Arrays are float32, float16 or uint16 bf16 bits; with ``dtype``
        they are converted to it first (e.g. float32 data for a bf16 model).
        """
        return self._stream(rq.append_requests(context_id, token_ids, layers, chunk_tokens, dtype, sample_queries))

    def append_layer(self, context_id: str, layer: int, token_ids: npt.ArrayLike, keys: npt.ArrayLike, values: npt.ArrayLike, *,
                     chunk_tokens: int = DEFAULT_CHUNK_TOKENS, dtype: Optional[DTypeLike] = None) -> contexts_pb2.AppendKvResponse:
        """Appends one layer's K/V [n, num_kv_heads, head_dim] in a single stream."""
        return self._stream(rq.layer_requests(context_id, layer, token_ids, keys, values, chunk_tokens, dtype))

    def _stream(self, requests: Iterator[contexts_pb2.AppendKvRequest]) -> contexts_pb2.AppendKvResponse:
        # Build the first message here so argument errors raise ValueError/TypeError rather than a cancelled call.
        head = next(requests, None)
        if head is None:
            raise ValueError("nothing to append")
        first: contexts_pb2.AppendKvRequest = head

        def all_requests() -> Iterator[contexts_pb2.AppendKvRequest]:
            yield first
            yield from requests

        return self._unary(self.contexts.AppendKv, all_requests())

    # -- reads ----------------------------------------------------------------------------------------------------

    def read_kv(self, context_id: str, layer: int = -1, start: int = 0, end: int = 0) -> Iterator[KvChunk]:
        """Streams stored K/V back: tokens [start, end) of ``layer`` (-1 = every layer, one after another; end 0 = the
        layer's end), as chunks whose keys/values are read-only views [n, num_kv_heads, head_dim] in the model's dtype."""
        call = self.contexts.ReadKv(contexts_pb2.ReadKvRequest(context_id=context_id, layer=layer, start=start, end=end),
                                    metadata=self._metadata, timeout=self._timeout)
        try:
            for chunk in call:
                yield rq.to_chunk(chunk)
        except grpc.RpcError as e:
            raise KvDbError.from_rpc_error(e) from None
        finally:
            call.cancel()

    def read_layer(self, context_id: str, layer: int, start: int = 0, end: int = 0) -> LayerKv:
        """One layer's token ids, keys and values (tokens [start, end); end 0 = the layer's end)."""
        return rq.concat_chunks(list(self.read_kv(context_id, layer, start, end)))

    # -- attention ------------------------------------------------------------------------------------------------

    def attend(self, context_id: str, layer: int, queries: npt.ArrayLike, *, exclude: Exclude = None, plan: PlanLike = None,
               epsilon: Optional[float] = None, delta: Optional[float] = None, max_latency_us: Optional[int] = None,
               budget: Optional[int] = None, beta: Optional[float] = None, return_selection: bool = False) -> AttentionPartial:
        """Partial attention of ``queries`` [q, num_query_heads, head_dim] over a stored layer, skipping ``exclude``
        (start, end). ``plan``: a Plan, a PlanKind or a name ("auto" by default, "exact", ...); ``epsilon``/``delta``
        set AUTO's tolerance (relative L2 error per query head, and the probability of exceeding it)."""
        request = rq.attend_request(context_id, layer, queries, exclude, plan, return_selection, epsilon=epsilon, delta=delta,
                                    max_latency_us=max_latency_us, budget=budget, beta=beta)
        return rq.to_partial(self._unary(self.attention.Attend, request))

    def explain(self, context_id: str, layer: int, queries: npt.ArrayLike, *, exclude: Exclude = None, plan: PlanLike = None,
                epsilon: Optional[float] = None, delta: Optional[float] = None, max_latency_us: Optional[int] = None,
                budget: Optional[int] = None, beta: Optional[float] = None) -> attention_pb2.ExplainResponse:
        """Runs the request as :meth:`attend` would and returns the structured explain instead of the output."""
        request = rq.attend_request(context_id, layer, queries, exclude, plan, False, epsilon=epsilon, delta=delta,
                                    max_latency_us=max_latency_us, budget=budget, beta=beta)
        return self._unary(self.attention.Explain, request)

    def attend_stream(self, requests: Iterator[attention_pb2.AttendRequest]) -> Iterator[AttentionPartial]:
        """AttendStream: one partial per request (build them with :func:`kvdb.attend_request`), in order."""
        call = self.attention.AttendStream(requests, metadata=self._metadata, timeout=self._timeout)
        try:
            for response in call:
                yield rq.to_partial(response)
        except grpc.RpcError as e:
            raise KvDbError.from_rpc_error(e) from None

    # -- admin and tenants ----------------------------------------------------------------------------------------

    def get_stats(self) -> admin_pb2.StatsResponse:
        return self._unary(self.admin.GetStats, admin_pb2.GetStatsRequest())

    def evict(self, target_cpu_bytes: int) -> admin_pb2.EvictResponse:
        return self._unary(self.admin.Evict, admin_pb2.EvictRequest(target_cpu_bytes=target_cpu_bytes))

    def checkpoint(self) -> admin_pb2.CheckpointResponse:
        return self._unary(self.admin.Checkpoint, admin_pb2.CheckpointRequest())

    def create_tenant(self, name: str, admin: bool = False) -> Tuple[tenants_pb2.Tenant, str]:
        """Creates a tenant (admin key only); returns it and its first API key (shown once)."""
        response = self._unary(self.tenants.CreateTenant, tenants_pb2.CreateTenantRequest(name=name, admin=admin))
        return response.tenant, response.api_key

    def list_tenants(self) -> List[tenants_pb2.Tenant]:
        return list(self._unary(self.tenants.ListTenants, tenants_pb2.ListTenantsRequest()).tenants)

    def delete_tenant(self, name: str) -> bool:
        return self._unary(self.tenants.DeleteTenant, tenants_pb2.DeleteTenantRequest(name=name)).deleted

