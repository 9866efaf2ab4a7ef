"""The asyncio KvDb client (grpc.aio): the same calls as :class:`kvdb.KvDbClient`, awaitable."""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterator, List, Mapping, Optional, Sequence, Tuple, TypeVar, Union

import grpc
import grpc.aio
import numpy.typing as npt

from kvdb import _requests as rq
from kvdb._requests import DEFAULT_CHUNK_TOKENS, Exclude, KvChunk, LayerKv, Layers, PlanLike
from kvdb.client import _target, channel_credentials, credentials_metadata
from kvdb.dtypes import DTypeLike
from kvdb.errors import KvDbError
from kvdb.partial import AttentionPartial
from kvdb.v1 import (admin_pb2, admin_pb2_grpc, attention_pb2, attention_pb2_grpc, contexts_pb2, contexts_pb2_grpc,
                     models_pb2, models_pb2_grpc, tenants_pb2, tenants_pb2_grpc)

T = TypeVar("T")


class AsyncAppendStream:
    """One AppendKv stream (one transaction) on the asyncio client: ``await write(...)`` chunks, then ``await complete()``.

    Leaving ``async with`` without :meth:`complete` (e.g. on an exception) cancels the stream: nothing is stored.
    """

    def __init__(self, client: "AsyncKvDbClient", context_id: str) -> None:
        self._context_id = context_id
        self._call = client.contexts.AppendKv(metadata=client._metadata, timeout=client._timeout)
        self._closed = False

    async def _send(self, request: contexts_pb2.AppendKvRequest) -> None:
        try:
            await self._call.write(request)
        except (grpc.RpcError, grpc.aio.UsageError, RuntimeError):
            # The server ended the stream (it refused an earlier message): its status is the error.
            await self._result()
            raise

    async def _result(self) -> contexts_pb2.AppendKvResponse:
        try:
            return await self._call
        except grpc.RpcError as e:
            raise KvDbError.from_rpc_error(e) from None

    async def write(self, layer: int, token_ids: npt.ArrayLike, keys: npt.ArrayLike, values: npt.ArrayLike,
                    chunk_tokens: int = DEFAULT_CHUNK_TOKENS, dtype: Optional[DTypeLike] = None) -> None:
        for request in rq.layer_requests(self._context_id, layer, token_ids, keys, values, chunk_tokens, dtype):
            await self._send(request)

    async def write_sample_queries(self, layer: int, queries: npt.ArrayLike) -> None:
        await self._send(rq.sample_queries_request(self._context_id, layer, queries))

    async def complete(self) -> contexts_pb2.AppendKvResponse:
        if not self._closed:
            self._closed = True
            try:
                await self._call.done_writing()
            except (grpc.RpcError, grpc.aio.UsageError, RuntimeError):
                pass
        return await self._result()

    def cancel(self) -> None:
        self._closed = True
        self._call.cancel()

    async def __aenter__(self) -> "AsyncAppendStream":
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None or not self._closed:
            self.cancel()


class AsyncKvDbClient:
    """The asyncio variant of :class:`kvdb.KvDbClient` (grpc.aio). Create it inside a running event loop;
    ``await client.close()`` or ``async with`` when done."""

    DEFAULT_CHUNK_TOKENS = DEFAULT_CHUNK_TOKENS

    def __init__(self, address: str, api_key: Optional[str] = None, *, root_certificates: Optional[bytes] = None,
                 private_key: Optional[bytes] = None, certificate_chain: Optional[bytes] = None,
                 secure: Optional[bool] = None, timeout: Optional[float] = None,
                 options: Optional[Sequence[Tuple[str, Any]]] = None) -> None:
        target, use_tls = _target(address, root_certificates, secure)
        opts = list(rq.CHANNEL_OPTIONS) + list(options or [])
        if use_tls:
            self._channel = grpc.aio.secure_channel(target, channel_credentials(root_certificates, private_key, certificate_chain), options=opts)
        else:
            self._channel = grpc.aio.insecure_channel(target, options=opts)
        self._metadata = credentials_metadata(api_key)
        self._timeout = timeout
        self.models = models_pb2_grpc.ModelsStub(self._channel)
        self.contexts = contexts_pb2_grpc.ContextsStub(self._channel)
        self.attention = attention_pb2_grpc.AttentionStub(self._channel)
        self.admin = admin_pb2_grpc.AdminStub(self._channel)
        self.tenants = tenants_pb2_grpc.TenantsStub(self._channel)

    async def _unary(self, method: Any, request: Any) -> Any:
        try:
            return await method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as e:
            raise KvDbError.from_rpc_error(e) from None

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncKvDbClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- models ---------------------------------------------------------------------------------------------------

    async def create_model(self, name: Union[str, models_pb2.Model], *, num_layers: int = 0, num_query_heads: int = 0,
                           num_kv_heads: int = 0, head_dim: int = 0, dtype: DTypeLike = "bf16", block_size: int = 0,
                           softmax_scale: float = 0.0) -> models_pb2.Model:
        model = rq.model_message(name, num_layers, num_query_heads, num_kv_heads, head_dim, dtype, block_size, softmax_scale)
        return await self._unary(self.models.CreateModel, models_pb2.CreateModelRequest(model=model))

    async def get_model(self, name: str) -> models_pb2.Model:
        return await self._unary(self.models.GetModel, models_pb2.GetModelRequest(name=name))

    async def list_models(self) -> List[models_pb2.Model]:
        return list((await self._unary(self.models.ListModels, models_pb2.ListModelsRequest())).models)

    # -- contexts -------------------------------------------------------------------------------------------------

    async def create_context(self, model: str, namespace: str = "", id: str = "",
                             prefix_token_ids: Optional[npt.ArrayLike] = None, ttl_seconds: int = 0) -> contexts_pb2.Context:
        return await self._unary(self.contexts.CreateContext, rq.create_context_request(model, namespace, id, prefix_token_ids, ttl_seconds))

    async def get_context(self, id: str) -> contexts_pb2.Context:
        return await self._unary(self.contexts.GetContext, contexts_pb2.GetContextRequest(id=id))

    async def update_context(self, id: str, ttl_seconds: Optional[int] = None, pinned: Optional[bool] = None) -> contexts_pb2.Context:
        return await self._unary(self.contexts.UpdateContext, rq.update_context_request(id, ttl_seconds, pinned))

    async def delete_context(self, id: str) -> bool:
        return bool((await self._unary(self.contexts.DeleteContext, contexts_pb2.DeleteContextRequest(id=id))).deleted)

    async def fork_context(self, id: str, new_id: str = "") -> contexts_pb2.Context:
        return await self._unary(self.contexts.ForkContext, contexts_pb2.ForkContextRequest(id=id, new_id=new_id))

    fork = fork_context

    async def list_contexts(self, page_size: int = 0, page_token: str = "") -> contexts_pb2.ListContextsResponse:
        return await self._unary(self.contexts.ListContexts, contexts_pb2.ListContextsRequest(page_size=page_size, page_token=page_token))

    async def lookup_prefix(self, model: str, namespace: str, token_ids: npt.ArrayLike) -> int:
        return int((await self._unary(self.contexts.LookupPrefix, rq.prefix_request(model, namespace, token_ids))).num_tokens)

    # -- appends --------------------------------------------------------------------------------------------------

    def open_append(self, context_id: str) -> AsyncAppendStream:
        return AsyncAppendStream(self, context_id)

    async def append(self, context_id: str, token_ids: npt.ArrayLike, layers: Layers, *, chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
                     dtype: Optional[DTypeLike] = None,
                     sample_queries: Optional[Mapping[int, npt.ArrayLike]] = None) -> contexts_pb2.AppendKvResponse:
        """Appends the same tokens to several layers in one stream (one transaction); see :meth:`KvDbClient.append`."""
        return await self._stream(rq.append_requests(context_id, token_ids, layers, chunk_tokens, dtype, sample_queries))

    async def append_layer(self, context_id: str, layer: int, token_ids: npt.ArrayLike, keys: npt.ArrayLike, values: npt.ArrayLike, *,
                           chunk_tokens: int = DEFAULT_CHUNK_TOKENS, dtype: Optional[DTypeLike] = None) -> contexts_pb2.AppendKvResponse:
        return await self._stream(rq.layer_requests(context_id, layer, token_ids, keys, values, chunk_tokens, dtype))

    async def _stream(self, requests: Iterator[contexts_pb2.AppendKvRequest]) -> contexts_pb2.AppendKvResponse:
        stream = self.open_append("")
        try:
            for request in requests:
                await stream._send(request)
        except BaseException:
            stream.cancel()
            raise
        return await stream.complete()

    # -- reads ----------------------------------------------------------------------------------------------------

    async def read_kv(self, context_id: str, layer: int = -1, start: int = 0, end: int = 0) -> AsyncIterator[KvChunk]:
        call = self.contexts.ReadKv(contexts_pb2.ReadKvRequest(context_id=context_id, layer=layer, start=start, end=end),
                                    metadata=self._metadata, timeout=self._timeout)
        try:
            async for chunk in call:
                yield rq.to_chunk(chunk)
        except grpc.RpcError as e:
            raise KvDbError.from_rpc_error(e) from None
        finally:
            call.cancel()

    async def read_layer(self, context_id: str, layer: int, start: int = 0, end: int = 0) -> LayerKv:
        return rq.concat_chunks([c async for c in self.read_kv(context_id, layer, start, end)])

    # -- attention ------------------------------------------------------------------------------------------------

    async def attend(self, context_id: str, layer: int, queries: npt.ArrayLike, *, exclude: Exclude = None, plan: PlanLike = None,
                     epsilon: Optional[float] = None, delta: Optional[float] = None, max_latency_us: Optional[int] = None,
                     budget: Optional[int] = None, beta: Optional[float] = None, return_selection: bool = False) -> AttentionPartial:
        request = rq.attend_request(context_id, layer, queries, exclude, plan, return_selection, epsilon=epsilon, delta=delta,
                                    max_latency_us=max_latency_us, budget=budget, beta=beta)
        return rq.to_partial(await self._unary(self.attention.Attend, request))

    async def explain(self, context_id: str, layer: int, queries: npt.ArrayLike, *, exclude: Exclude = None, plan: PlanLike = None,
                      epsilon: Optional[float] = None, delta: Optional[float] = None, max_latency_us: Optional[int] = None,
                      budget: Optional[int] = None, beta: Optional[float] = None) -> attention_pb2.ExplainResponse:
        request = rq.attend_request(context_id, layer, queries, exclude, plan, False, epsilon=epsilon, delta=delta,
                                    max_latency_us=max_latency_us, budget=budget, beta=beta)
        return await self._unary(self.attention.Explain, request)

    # -- admin and tenants ----------------------------------------------------------------------------------------

    async def get_stats(self) -> admin_pb2.StatsResponse:
        return await self._unary(self.admin.GetStats, admin_pb2.GetStatsRequest())

    async def create_tenant(self, name: str, admin: bool = False) -> Tuple[tenants_pb2.Tenant, str]:
        response = await self._unary(self.tenants.CreateTenant, tenants_pb2.CreateTenantRequest(name=name, admin=admin))
        return response.tenant, response.api_key

    async def list_tenants(self) -> List[tenants_pb2.Tenant]:
        return list((await self._unary(self.tenants.ListTenants, tenants_pb2.ListTenantsRequest())).tenants)
