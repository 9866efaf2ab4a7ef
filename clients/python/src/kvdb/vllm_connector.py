"""A vLLM v1 KV connector backed by KvDb: plain prefix-KV reuse across requests (and engines).

Follows the interface of ``vllm/distributed/kv_transfer/kv_connector/v1/base.py`` as of **vLLM 0.10.0**
(``KVConnectorBase_V1(vllm_config, role)``; ``get_num_new_matched_tokens`` returns ``(int, bool)``;
``update_state_after_alloc(request, blocks, num_external_tokens)``; ``request_finished`` returns
``(bool, Optional[dict])``). The 0.9.x shapes of the scheduler output (``block_ids`` as a flat list,
``scheduled_cached_reqs`` as a list of per-request objects) are accepted too.

Load it in vLLM with::

    --kv-transfer-config '{"kv_connector": "KvDbConnector", "kv_connector_module_path": "kvdb.vllm_connector",
                           "kv_role": "kv_both",
                           "kv_connector_extra_config": {"kvdb_address": "http://127.0.0.1:50051", "kvdb_model": "llama"}}'

What it does:

* scheduler side: ``get_num_new_matched_tokens`` asks ``LookupPrefix`` for the longest stored prefix of the prompt and
  offers only whole vLLM blocks of it, never the prompt's last token (vLLM must compute at least one token to sample);
  ``update_state_after_alloc`` records the block ids the load lands in; ``build_connector_meta`` turns them into slot
  mappings (``slot = block_id * block_size + offset``) for loads, and for saves of prompts whose prefill ends in this
  step.
* worker side: ``start_load_kv`` creates a throw-away context from the prefix (``CreateContext(prefix_token_ids)``, by
  reference on the server), streams its K/V back with ``ReadKv`` and scatters it into the paged caches
  ``[2, num_blocks, block_size, num_kv_heads, head_dim]`` at the slots; loads are synchronous, so
  ``wait_for_layer_load`` returns at once. ``save_kv_layer`` gathers the prompt's K/V of one layer from its slots and
  writes it to one ``AppendKv`` stream per request (a context started from the prefix KvDb already holds, so only the
  new tokens are sent); ``wait_for_save`` commits the streams, which publishes the blocks for later lookups.

Caches may be numpy arrays (float32, float16, or uint16 holding bf16 bits) or torch tensors (any device; bf16 is sent
as its bits); the KvDb model is created from the first cache's shape and dtype when it does not exist.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from kvdb.client import AppendStream, KvDbClient
from kvdb.errors import AlreadyExistsError, NotFoundError

logger = logging.getLogger(__name__)

VLLM_INTERFACE_VERSION = "0.10.0"

try:  # pragma: no cover - vLLM is not installed where the tests run
    from vllm.distributed.kv_transfer.kv_connector.v1.base import (KVConnectorBase_V1, KVConnectorMetadata,
                                                                     KVConnectorRole)
    HAVE_VLLM = True
except Exception:  # ImportError, or a vLLM whose import fails without a GPU
    HAVE_VLLM = False

    class KVConnectorRole(enum.Enum):  # type: ignore[no-redef]
        """Stand-in for vllm's KVConnectorRole."""

        SCHEDULER = 0
        WORKER = 1

    class KVConnectorMetadata:  # type: ignore[no-redef]
        """Stand-in for vllm's KVConnectorMetadata (an empty base class)."""

    class KVConnectorBase_V1:  # type: ignore[no-redef]
        """Stand-in for vllm 0.10.0's KVConnectorBase_V1: the same constructor, properties and non-abstract methods."""

        def __init__(self, vllm_config: Any, role: "KVConnectorRole") -> None:
            self._connector_metadata: Optional[KVConnectorMetadata] = None
            self._vllm_config = vllm_config
            self._role = role

        @property
        def role(self) -> "KVConnectorRole":
            return self._role

        def bind_connector_metadata(self, connector_metadata: KVConnectorMetadata) -> None:
            self._connector_metadata = connector_metadata

        def clear_connector_metadata(self) -> None:
            self._connector_metadata = None

        def _get_connector_metadata(self) -> KVConnectorMetadata:
            assert self._connector_metadata is not None
            return self._connector_metadata

        def register_kv_caches(self, kv_caches: Dict[str, Any]) -> None:
            return

        def get_finished(self, finished_req_ids: set) -> Tuple[Optional[set], Optional[set]]:
            return None, None

        def request_finished(self, request: Any, block_ids: List[int]) -> Tuple[bool, Optional[Dict[str, Any]]]:
            return False, None

# -- metadata (scheduler -> workers) -----------------------------------------------------------------------------------


@dataclass
class LoadSpec:
    """Load tokens [start, end) of ``token_ids`` (the prefix up to ``end``) into ``slot_mapping`` (one slot a token)."""

    req_id: str
    token_ids: List[int]
    start: int
    end: int
    slot_mapping: np.ndarray


@dataclass
class SaveSpec:
    """Save the K/V of ``token_ids`` (the whole prompt) from ``slot_mapping`` once this step has computed it."""

    req_id: str
    token_ids: List[int]
    slot_mapping: np.ndarray


@dataclass
class KvDbConnectorMetadata(KVConnectorMetadata):  # type: ignore[misc]
    loads: List[LoadSpec] = field(default_factory=list)
    saves: List[SaveSpec] = field(default_factory=list)


@dataclass
class _ReqState:
    token_ids: List[int]
    block_ids: List[int]
    num_computed: int = 0          # tokens vLLM had computed locally when the lookup ran
    num_external: int = 0          # tokens to load from KvDb (after update_state_after_alloc)
    stored: int = 0                # tokens KvDb held of the prompt at lookup
    load_pending: bool = False
    saved: bool = False


def slot_mapping(block_ids: Sequence[int], block_size: int, start: int, end: int) -> np.ndarray:
    """vLLM's slots of token positions [start, end): ``block_ids[i // block_size] * block_size + i % block_size``."""
    pos = np.arange(start, end, dtype=np.int64)
    blocks = np.asarray(block_ids, dtype=np.int64)
    if end > len(blocks) * block_size:
        raise ValueError(f"{len(blocks)} blocks of {block_size} cannot hold {end} tokens")
    return blocks[pos // block_size] * block_size + pos % block_size


def _first_group(block_ids: Any) -> List[int]:
    """Block ids of the first KV cache group: 0.10 gives tuple[list[int], ...], 0.9.0 a flat list."""
    if block_ids is None:
        return []
    if hasattr(block_ids, "get_block_ids"):  # KVCacheBlocks
        block_ids = block_ids.get_block_ids()
    seq = list(block_ids)
    if seq and isinstance(seq[0], (list, tuple)):
        return list(seq[0])
    return [int(b) for b in seq]


def _layer_index(name: str, fallback: int) -> int:
    m = re.search(r"(?:^|\.)(\d+)(?:\.|$)", name)
    return int(m.group(1)) if m else fallback


# -- tensors: numpy or torch ------------------------------------------------------------------------------------------


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _kvdb_dtype(cache: Any) -> str:
    if _is_torch(cache):
        name = str(cache.dtype).replace("torch.", "")
    else:
        name = np.asarray(cache).dtype.name
    return {"float32": "f32", "float16": "f16", "bfloat16": "bf16", "uint16": "bf16"}[name]


def _gather(cache: Any, slots: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """K, V [n, heads, dim] at ``slots`` of a paged cache [2, num_blocks, block_size, heads, dim], as numpy."""
    if _is_torch(cache):
        import torch

        flat = cache.reshape(2, -1, cache.shape[-2], cache.shape[-1])
        idx = torch.as_tensor(slots, dtype=torch.long, device=cache.device)
        kv = flat.index_select(1, idx).detach().cpu()
        if kv.dtype == torch.bfloat16:
            arr = kv.view(torch.int16).numpy().view(np.uint16)
        else:
            arr = kv.numpy()
        return arr[0], arr[1]
    flat = np.asarray(cache).reshape(2, -1, cache.shape[-2], cache.shape[-1])
    return flat[0, slots], flat[1, slots]


def _scatter(cache: Any, slots: np.ndarray, keys: np.ndarray, values: np.ndarray) -> None:
    """Writes K, V [n, heads, dim] into ``slots`` of a paged cache, in place."""
    if _is_torch(cache):
        import torch

        flat = cache.view(2, -1, cache.shape[-2], cache.shape[-1])
        idx = torch.as_tensor(slots, dtype=torch.long, device=cache.device)
        for i, part in enumerate((keys, values)):
            arr = np.array(part, copy=True)  # writable: torch.from_numpy warns on read-only views
            t = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16) if cache.dtype == torch.bfloat16 else torch.from_numpy(arr)
            flat[i].index_copy_(0, idx, t.to(device=cache.device, dtype=cache.dtype))
        return
    flat = cache.reshape(2, -1, cache.shape[-2], cache.shape[-1])
    if not np.shares_memory(flat, cache):
        raise ValueError("the KV cache must be contiguous (a reshape of it must be a view)")
    flat[0, slots] = keys
    flat[1, slots] = values


# -- the connector ----------------------------------------------------------------------------------------------------


class KvDbConnector(KVConnectorBase_V1):  # type: ignore[misc,valid-type]
    """vLLM v1 KV connector (``kv_connector_module_path = "kvdb.vllm_connector"``, ``kv_connector = "KvDbConnector"``).

    ``kv_connector_extra_config`` keys: ``kvdb_address`` (default ``http://127.0.0.1:50051``), ``kvdb_model`` (the KvDb
    model name; default: vLLM's served model name), ``kvdb_namespace`` (default ``""``), ``kvdb_api_key``,
    ``kvdb_ttl_seconds`` (TTL of saved contexts; 0 = kept), ``kvdb_num_query_heads`` (for the model KvDb creates).
    ``client`` (tests) replaces the client the connector would open.
    """

    def __init__(self, vllm_config: Any, role: Any, client: Optional[KvDbClient] = None) -> None:
        super().__init__(vllm_config, role)
        extra: Mapping[str, Any] = dict(getattr(vllm_config.kv_transfer_config, "kv_connector_extra_config", None) or {})
        self.block_size: int = int(vllm_config.cache_config.block_size)
        model_config = getattr(vllm_config, "model_config", None)
        self.model: str = str(extra.get("kvdb_model") or getattr(model_config, "served_model_name", None)
                              or getattr(model_config, "model", "vllm"))
        self.model = self.model.replace("/", "_")
        self.namespace: str = str(extra.get("kvdb_namespace", ""))
        self.ttl_seconds: int = int(extra.get("kvdb_ttl_seconds", 0))
        self._num_query_heads: Optional[int] = extra.get("kvdb_num_query_heads")
        self._owns_client = client is None
        self.client: KvDbClient = client or KvDbClient(str(extra.get("kvdb_address", "http://127.0.0.1:50051")),
                                                       api_key=extra.get("kvdb_api_key"))
        # scheduler side
        self._reqs: Dict[str, _ReqState] = {}
        # worker side
        self._kv_caches: Dict[str, Any] = {}
        self._layer_ids: Dict[str, int] = {}
        self._model_ready = False
        self._save_streams: Dict[str, Tuple[Optional[AppendStream], int, str]] = {}  # req -> (stream, tokens already held, ctx)
        self.saved_contexts: List[str] = []

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    # -- scheduler side ---------------------------------------------------------------------------------------------

    def get_num_new_matched_tokens(self, request: Any, num_computed_tokens: int) -> Tuple[int, bool]:
        """Tokens beyond ``num_computed_tokens`` KvDb can supply: whole blocks of the stored prefix, short of the
        prompt's last token; never asynchronous (False)."""
        tokens = [int(t) for t in request.prompt_token_ids]
        try:
            stored = int(self.client.lookup_prefix(self.model, self.namespace, tokens)) if tokens else 0
        except NotFoundError:  # no model yet: nothing was saved
            stored = 0
        usable = min(stored, len(tokens) - 1) // self.block_size * self.block_size
        state = self._reqs.setdefault(request.request_id, _ReqState(tokens, []))
        state.token_ids, state.stored, state.num_computed = tokens, stored, num_computed_tokens
        return max(0, usable - num_computed_tokens), False

    def update_state_after_alloc(self, request: Any, blocks: Any, num_external_tokens: int) -> None:
        state = self._reqs.setdefault(request.request_id, _ReqState([int(t) for t in request.prompt_token_ids], []))
        state.block_ids = _first_group(blocks)
        state.num_external = num_external_tokens
        state.load_pending = num_external_tokens > 0

    def build_connector_meta(self, scheduler_output: Any) -> KvDbConnectorMetadata:
        meta = KvDbConnectorMetadata()
        scheduled: Mapping[str, int] = getattr(scheduler_output, "num_scheduled_tokens", {}) or {}
        progress: Dict[str, int] = {}  # req -> tokens computed before this step
        for new in getattr(scheduler_output, "scheduled_new_reqs", []) or []:
            state = self._reqs.setdefault(new.req_id, _ReqState([int(t) for t in new.prompt_token_ids], []))
            state.block_ids = _first_group(new.block_ids)
            progress[new.req_id] = int(new.num_computed_tokens)
        for req_id, new_blocks, computed in _cached_reqs(getattr(scheduler_output, "scheduled_cached_reqs", None)):
            state = self._reqs.get(req_id)
            if state is None:
                continue
            state.block_ids = state.block_ids + _first_group(new_blocks)
            progress[req_id] = computed
        for req_id, done_before in progress.items():
            state = self._reqs[req_id]
            if state.load_pending:
                start, end = state.num_computed, state.num_computed + state.num_external
                meta.loads.append(LoadSpec(req_id, state.token_ids[:end], start, end,
                                           slot_mapping(state.block_ids, self.block_size, start, end)))
                state.load_pending = False
            n = len(state.token_ids)
            if (not state.saved and state.stored < n and req_id in scheduled
                    and done_before + int(scheduled[req_id]) >= n):
                meta.saves.append(SaveSpec(req_id, state.token_ids, slot_mapping(state.block_ids, self.block_size, 0, n)))
                state.saved = True
        return meta

    def request_finished(self, request: Any, block_ids: List[int]) -> Tuple[bool, Optional[Dict[str, Any]]]:
        """Forgets the request; saves are synchronous (done by ``wait_for_save``), so the blocks can be freed now."""
        self._reqs.pop(request.request_id, None)
        return False, None

    # -- worker side ------------------------------------------------------------------------------------------------

    def register_kv_caches(self, kv_caches: Dict[str, Any]) -> None:
        self._kv_caches = dict(kv_caches)
        self._layer_ids = {name: _layer_index(name, i) for i, name in enumerate(self._kv_caches)}
        if self._kv_caches:
            self._ensure_model(next(iter(self._kv_caches.values())), len(self._kv_caches))

    def _ensure_model(self, cache: Any, num_layers: int) -> None:
        if self._model_ready:
            return
        heads, dim = int(cache.shape[-2]), int(cache.shape[-1])
        try:
            self.client.create_model(self.model, num_layers=num_layers, num_query_heads=int(self._num_query_heads or heads),
                                     num_kv_heads=heads, head_dim=dim, dtype=_kvdb_dtype(cache), block_size=self.block_size)
        except AlreadyExistsError:
            pass
        self._model_ready = True

    def _num_layers_hint(self) -> int:
        model_config = getattr(self._vllm_config, "model_config", None)
        try:
            return int(model_config.get_num_layers(self._vllm_config.parallel_config))  # type: ignore[union-attr]
        except Exception:
            return 1

    def _layer_of(self, name: str) -> int:
        if name not in self._layer_ids:
            self._layer_ids[name] = _layer_index(name, len(self._layer_ids))
        return self._layer_ids[name]

    def _caches(self, forward_context: Any) -> Dict[str, Any]:
        if self._kv_caches:
            return self._kv_caches
        # vLLM without register_kv_caches: the attention layers of the forward context hold the caches.
        layers = getattr(forward_context, "no_compile_layers", {}) or {}
        ve = getattr(forward_context, "virtual_engine", 0)
        return {name: layer.kv_cache[ve] for name, layer in layers.items() if hasattr(layer, "kv_cache")}

    def start_load_kv(self, forward_context: Any, **kwargs: Any) -> None:
        """Reads each load's tokens [start, end) from KvDb and writes them into the paged caches (synchronously)."""
        meta = self._get_connector_metadata()
        loads = getattr(meta, "loads", [])
        if not loads:
            return
        caches = self._caches(forward_context)
        by_layer = {self._layer_of(name): cache for name, cache in caches.items()}
        for load in loads:
            ctx = self.client.create_context(self.model, self.namespace, prefix_token_ids=load.token_ids, ttl_seconds=600)
            try:
                if ctx.num_tokens < load.end:
                    raise RuntimeError(f"KvDb holds {ctx.num_tokens} of the {load.end} prefix tokens of request "
                                       f"{load.req_id} (evicted since the lookup)")
                filled = {layer: 0 for layer in by_layer}
                for chunk in self.client.read_kv(ctx.id, -1, load.start, load.end):
                    cache = by_layer.get(chunk.layer)
                    if cache is None:
                        continue
                    off = chunk.start - load.start
                    n = len(chunk.token_ids)
                    _scatter(cache, load.slot_mapping[off:off + n], chunk.keys, chunk.values)
                    filled[chunk.layer] += n
                short = {layer: got for layer, got in filled.items() if got != load.end - load.start}
                if short:
                    raise RuntimeError(f"KvDb returned too few tokens for layers {sorted(short)}")
            finally:
                self.client.delete_context(ctx.id)

    def wait_for_layer_load(self, layer_name: str) -> None:
        """Loads finish inside ``start_load_kv``: nothing to wait for."""
        return

    def save_kv_layer(self, layer_name: str, kv_layer: Any, attn_metadata: Any, **kwargs: Any) -> None:
        """Writes this layer's prompt K/V of each request saved in this step to that request's AppendKv stream."""
        saves = getattr(self._get_connector_metadata(), "saves", [])
        if not saves:
            return
        self._ensure_model(kv_layer, len(self._kv_caches) or self._num_layers_hint())
        layer = self._layer_of(layer_name)
        for save in saves:
            entry = self._save_streams.get(save.req_id)
            if entry is None:  # start from what KvDb already holds of the prompt (by reference): send only the rest
                ctx = self.client.create_context(self.model, self.namespace, prefix_token_ids=save.token_ids,
                                                 ttl_seconds=self.ttl_seconds)
                held_now = int(ctx.num_tokens)
                entry = (self.client.open_append(ctx.id) if held_now < len(save.token_ids) else None, held_now, ctx.id)
                self._save_streams[save.req_id] = entry
            stream, held, _ = entry
            if stream is None:
                continue
            keys, values = _gather(kv_layer, save.slot_mapping[held:])
            stream.write(layer, save.token_ids[held:], keys, values)

    def wait_for_save(self) -> None:
        """Commits every AppendKv stream of this step: the saved blocks become visible to LookupPrefix."""
        streams, self._save_streams = self._save_streams, {}
        for stream, _, ctx_id in streams.values():
            if stream is None:  # KvDb already held the whole prompt: the context adds nothing
                self.client.delete_context(ctx_id)
                continue
            stream.complete()
            self.saved_contexts.append(ctx_id)


def _cached_reqs(cached: Any) -> List[Tuple[str, Any, int]]:
    """(req_id, new block ids, num_computed_tokens) of the running requests: 0.10's CachedRequestData (lists) or 0.9's
    list of per-request objects."""
    if not cached:
        return []
    if hasattr(cached, "req_ids"):
        return [(r, cached.new_block_ids[i], int(cached.num_computed_tokens[i])) for i, r in enumerate(cached.req_ids)]
    return [(c.req_id, c.new_block_ids, int(c.num_computed_tokens)) for c in cached]
