"""kvdb.vllm_connector against a stand-in of vLLM 0.10's paged KV layout and scheduler/worker call order, and a real
server. vLLM itself is not installed: the stand-ins below mirror the objects the connector reads (Request,
KVCacheBlocks, NewRequestData, CachedRequestData, SchedulerOutput) and the per-layer caches
[2, num_blocks, block_size, num_kv_heads, head_dim]."""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest

import kvdb
from kvdb.vllm_connector import KvDbConnector, KVConnectorRole, slot_mapping

BLOCK = 16
LAYERS = 3
HEADS = 2
DIM = 8


# -- stand-ins of vLLM objects ----------------------------------------------------------------------------------------


@dataclass
class Request:
    request_id: str
    prompt_token_ids: List[int]


@dataclass
class KVCacheBlocks:
    blocks: List[int]

    def get_block_ids(self) -> Tuple[List[int], ...]:
        return (list(self.blocks),)


@dataclass
class NewRequestData:
    req_id: str
    prompt_token_ids: List[int]
    block_ids: Tuple[List[int], ...]
    num_computed_tokens: int


@dataclass
class CachedRequestData:
    req_ids: List[str] = field(default_factory=list)
    new_block_ids: List[Optional[Tuple[List[int], ...]]] = field(default_factory=list)
    num_computed_tokens: List[int] = field(default_factory=list)


@dataclass
class SchedulerOutput:
    scheduled_new_reqs: List[NewRequestData]
    scheduled_cached_reqs: CachedRequestData
    num_scheduled_tokens: Dict[str, int]


def vllm_config(model: str, namespace: str, address: str) -> SimpleNamespace:
    extra = {"kvdb_address": address, "kvdb_model": model, "kvdb_namespace": namespace}
    return SimpleNamespace(kv_transfer_config=SimpleNamespace(kv_connector_extra_config=extra),
                           cache_config=SimpleNamespace(block_size=BLOCK), model_config=None)


def true_kv(layer: int, tokens: List[int], pos: int, dtype: str) -> np.ndarray:
    """The K/V [2, heads, dim] a model computes at ``pos``: a function of the layer and tokens[:pos + 1] (causal)."""
    seed = zlib.crc32(np.asarray([layer] + tokens[:pos + 1], dtype=np.int64).tobytes())
    x = np.random.default_rng(seed).standard_normal((2, HEADS, DIM)).astype(np.float32)
    if dtype == "bf16":
        return kvdb.f32_to_bf16(x)
    return x.astype(dtype)


class Engine:
    """One vLLM engine: its own paged caches, block allocator (blocks handed out shuffled), a scheduler-side and a
    worker-side connector, and the 0.10 call order of one prefill step."""

    def __init__(self, address: str, model: str, namespace: str, dtype: str, num_blocks: int = 32, seed: int = 0) -> None:
        self.dtype = dtype
        np_dtype = np.uint16 if dtype == "bf16" else np.dtype(dtype)
        self.caches = {f"model.layers.{i}.self_attn.attn": np.zeros((2, num_blocks, BLOCK, HEADS, DIM), dtype=np_dtype)
                       for i in range(LAYERS)}
        self.free = list(np.random.default_rng(seed).permutation(num_blocks))
        cfg = vllm_config(model, namespace, address)
        self.sched = KvDbConnector(cfg, KVConnectorRole.SCHEDULER)
        self.worker = KvDbConnector(cfg, KVConnectorRole.WORKER)
        self.worker.register_kv_caches(self.caches)
        self.blocks: Dict[str, List[int]] = {}

    def close(self) -> None:
        self.sched.close()
        self.worker.close()

    def run_prefill(self, req: Request, local_computed: int = 0) -> int:
        """Schedules the whole prompt in one step; returns the tokens loaded from KvDb."""
        n = len(req.prompt_token_ids)
        ext, is_async = self.sched.get_num_new_matched_tokens(req, local_computed)
        assert is_async is False
        blocks = [int(self.free.pop()) for _ in range(-(-n // BLOCK))]
        self.blocks[req.request_id] = blocks
        self.sched.update_state_after_alloc(req, KVCacheBlocks(blocks), ext)
        computed = local_computed + ext
        out = SchedulerOutput([NewRequestData(req.request_id, req.prompt_token_ids, (blocks,), computed)],
                              CachedRequestData(), {req.request_id: n - computed})
        meta = self.sched.build_connector_meta(out)
        self.step(meta, req, blocks, computed, n)
        self.sched.request_finished(req, blocks)
        return ext

    def step(self, meta, req: Request, blocks: List[int], start: int, end: int) -> None:
        self.worker.bind_connector_metadata(meta)
        self.worker.start_load_kv(SimpleNamespace(no_compile_layers={}, virtual_engine=0))
        slots = slot_mapping(blocks, BLOCK, 0, end)
        for i, (name, cache) in enumerate(self.caches.items()):
            self.worker.wait_for_layer_load(name)
            flat = cache.reshape(2, -1, HEADS, DIM)
            for pos in range(start, end):  # attention writes the new tokens' K/V into the cache
                flat[:, slots[pos]] = true_kv(i, req.prompt_token_ids, pos, self.dtype)
            self.worker.save_kv_layer(name, cache, None)
        self.worker.wait_for_save()
        self.worker.clear_connector_metadata()

    def kv_at(self, req_id: str, positions: range) -> np.ndarray:
        """[layers, 2, n, heads, dim] of the request's positions, read through its slots."""
        slots = slot_mapping(self.blocks[req_id], BLOCK, positions.start, positions.stop)
        return np.stack([c.reshape(2, -1, HEADS, DIM)[:, slots] for c in self.caches.values()])


@pytest.fixture
def names() -> Tuple[str, str]:
    return "vllm-" + uuid.uuid4().hex[:8], "ns" + uuid.uuid4().hex[:6]


def tokens(seed: int, n: int) -> List[int]:
    return [int(t) for t in np.random.default_rng(seed).integers(1, 30000, n)]


# -- tests ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "float32", "bf16"])
def test_second_request_loads_first_requests_prefix_bit_identical(server, names, dtype):
    model, ns = names
    a = Engine(server.address, model, ns, dtype, seed=1)
    b = Engine(server.address, model, ns, dtype, seed=2)  # another engine: other block ids, empty caches
    try:
        prompt1 = tokens(10, 50)
        assert a.run_prefill(Request("r1", prompt1)) == 0  # nothing stored yet (not even the model)
        assert len(a.worker.saved_contexts) == 1

        prompt2 = prompt1[:40] + tokens(11, 20)  # shares 40 tokens: 2 full blocks of 16
        ext = b.run_prefill(Request("r2", prompt2))
        assert ext == 32

        loaded = b.kv_at("r2", range(0, 32))
        original = a.kv_at("r1", range(0, 32))
        assert loaded.dtype == original.dtype
        assert loaded.tobytes() == original.tobytes()  # bit-identical K and V, every layer
        expected = np.stack([np.stack([true_kv(i, prompt2, p, dtype) for p in range(32)], axis=1) for i in range(LAYERS)])
        assert np.array_equal(b.kv_at("r2", range(0, 60)).view(np.uint8), np.concatenate(
            [expected, np.stack([np.stack([true_kv(i, prompt2, p, dtype) for p in range(32, 60)], axis=1)
                                 for i in range(LAYERS)])], axis=2).view(np.uint8))
        # nothing was written outside the request's slots
        used = set(slot_mapping(b.blocks["r2"], BLOCK, 0, 60).tolist())
        for cache in b.caches.values():
            flat = cache.reshape(2, -1, HEADS * DIM)
            touched = set(np.nonzero(np.any(flat != 0, axis=(0, 2)))[0].tolist())
            assert touched <= used
    finally:
        a.close()
        b.close()


def test_different_prompt_matches_nothing(server, names):
    model, ns = names
    a = Engine(server.address, model, ns, "float16")
    try:
        a.run_prefill(Request("r1", tokens(20, 48)))
        other = Request("r2", tokens(21, 48))
        assert a.sched.get_num_new_matched_tokens(other, 0) == (0, False)
        assert a.run_prefill(other) == 0
    finally:
        a.close()


def test_only_full_blocks_and_never_the_last_token(server, names):
    model, ns = names
    a = Engine(server.address, model, ns, "float16", num_blocks=64)
    try:
        prompt = tokens(30, 48)  # exactly 3 blocks
        a.run_prefill(Request("r1", prompt))
        sched = a.sched
        assert a.worker.client.lookup_prefix(model, ns, prompt) == 48
        # the whole prompt is stored, but vLLM must compute its last token: 47 -> 2 full blocks
        assert sched.get_num_new_matched_tokens(Request("x1", prompt), 0) == (32, False)
        # a longer prompt: the 48 stored tokens are 3 full blocks
        assert sched.get_num_new_matched_tokens(Request("x2", prompt + [7, 8, 9]), 0) == (48, False)
        # 20 shared tokens: 1 full block; a partial block is never offered
        assert sched.get_num_new_matched_tokens(Request("x3", prompt[:20] + tokens(31, 30)), 0) == (16, False)
        # fewer shared tokens than one block: nothing
        assert sched.get_num_new_matched_tokens(Request("x4", prompt[:15] + tokens(32, 30)), 0) == (0, False)
        # tokens vLLM already has locally (its own prefix cache) are not counted again
        assert sched.get_num_new_matched_tokens(Request("x5", prompt + [1]), 16) == (32, False)
        assert sched.get_num_new_matched_tokens(Request("x6", prompt + [1]), 48) == (0, False)
    finally:
        a.close()


def test_load_after_local_prefix_hit_fills_only_the_external_blocks(server, names):
    model, ns = names
    a = Engine(server.address, model, ns, "float32", seed=3)
    b = Engine(server.address, model, ns, "float32", seed=4)
    try:
        prompt1 = tokens(40, 64)
        a.run_prefill(Request("r1", prompt1))
        prompt2 = prompt1 + tokens(41, 5)
        # b's own prefix cache already holds the first block (simulated: written before the step)
        req = Request("r2", prompt2)
        ext, _ = b.sched.get_num_new_matched_tokens(req, 16)
        assert ext == 48
        blocks = [int(b.free.pop()) for _ in range(-(-len(prompt2) // BLOCK))]
        b.blocks["r2"] = blocks
        b.sched.update_state_after_alloc(req, KVCacheBlocks(blocks), ext)
        meta = b.sched.build_connector_meta(SchedulerOutput(
            [NewRequestData("r2", prompt2, (blocks,), 16 + ext)], CachedRequestData(), {"r2": len(prompt2) - 16 - ext}))
        assert [(l.start, l.end) for l in meta.loads] == [(16, 64)]
        b.step(meta, req, blocks, 16 + ext, len(prompt2))
        first = b.kv_at("r2", range(0, 16))
        assert not np.any(first)  # the connector did not touch the locally cached block
        assert b.kv_at("r2", range(16, 64)).tobytes() == a.kv_at("r1", range(16, 64)).tobytes()
    finally:
        a.close()
        b.close()


def test_chunked_prefill_saves_when_the_prompt_is_complete(server, names):
    model, ns = names
    a = Engine(server.address, model, ns, "float16", seed=5)
    try:
        prompt = tokens(50, 40)
        req = Request("r1", prompt)
        assert a.sched.get_num_new_matched_tokens(req, 0) == (0, False)
        first = [int(a.free.pop()) for _ in range(2)]
        a.blocks["r1"] = list(first)
        a.sched.update_state_after_alloc(req, KVCacheBlocks(first), 0)
        meta1 = a.sched.build_connector_meta(SchedulerOutput(
            [NewRequestData("r1", prompt, (first,), 0)], CachedRequestData(), {"r1": 32}))
        assert meta1.saves == [] and meta1.loads == []
        a.step(meta1, req, first, 0, 32)
        assert a.worker.client.lookup_prefix(model, ns, prompt) == 0
        more = [int(a.free.pop())]
        a.blocks["r1"] += more
        meta2 = a.sched.build_connector_meta(SchedulerOutput(
            [], CachedRequestData(["r1"], [(more,)], [32]), {"r1": 8}))
        assert len(meta2.saves) == 1
        a.step(meta2, req, a.blocks["r1"], 32, 40)
        assert a.worker.client.lookup_prefix(model, ns, prompt) == 40
        b = Engine(server.address, model, ns, "float16", seed=6)
        try:
            assert b.run_prefill(Request("r2", prompt + [5])) == 32
            assert b.kv_at("r2", range(0, 32)).tobytes() == a.kv_at("r1", range(0, 32)).tobytes()
        finally:
            b.close()
    finally:
        a.close()


def test_importable_as_vllm_module_path():
    import importlib

    module = importlib.import_module("kvdb.vllm_connector")
    cls = getattr(module, "KvDbConnector")
    for name in ("get_num_new_matched_tokens", "update_state_after_alloc", "build_connector_meta", "request_finished",
                 "register_kv_caches", "start_load_kv", "wait_for_layer_load", "save_kv_layer", "wait_for_save",
                 "bind_connector_metadata", "clear_connector_metadata"):
        assert callable(getattr(cls, name))
    assert issubclass(cls, module.KVConnectorBase_V1)


def test_torch_bf16_caches_save_and_load(server, names):
    torch = pytest.importorskip("torch")
    model, ns = names
    prompt = tokens(60, 36)
    cfg = vllm_config(model, ns, server.address)
    sched = KvDbConnector(cfg, KVConnectorRole.SCHEDULER)
    worker = KvDbConnector(cfg, KVConnectorRole.WORKER)
    try:
        src = {f"model.layers.{i}.self_attn.attn": torch.zeros((2, 8, BLOCK, HEADS, DIM), dtype=torch.bfloat16)
               for i in range(LAYERS)}
        worker.register_kv_caches(src)
        blocks = [5, 2, 7]
        slots = slot_mapping(blocks, BLOCK, 0, 36)
        for i, cache in enumerate(src.values()):
            kv = np.stack([true_kv(i, prompt, p, "bf16") for p in range(36)], axis=1)  # [2, n, h, d] bf16 bits
            cache.view(2, -1, HEADS, DIM)[:, torch.as_tensor(slots)] = torch.from_numpy(kv.view(np.int16)).view(torch.bfloat16)
        req = Request("t1", prompt)
        assert sched.get_num_new_matched_tokens(req, 0) == (0, False)
        sched.update_state_after_alloc(req, KVCacheBlocks(blocks), 0)
        meta = sched.build_connector_meta(SchedulerOutput([NewRequestData("t1", prompt, (blocks,), 0)], CachedRequestData(),
                                                          {"t1": 36}))
        worker.bind_connector_metadata(meta)
        worker.start_load_kv(None)
        for name, cache in src.items():
            worker.save_kv_layer(name, cache, None)
        worker.wait_for_save()
        worker.clear_connector_metadata()
        stored = worker.client.read_layer(worker.saved_contexts[0], 1)
        assert stored.keys.dtype == np.uint16
        assert stored.keys.tobytes() == np.stack([true_kv(1, prompt, p, "bf16")[0] for p in range(36)]).tobytes()

        dst_worker = KvDbConnector(cfg, KVConnectorRole.WORKER)
        try:
            dst = {name: torch.zeros_like(c) for name, c in src.items()}
            dst_worker.register_kv_caches(dst)
            req2 = Request("t2", prompt + [9])
            ext, _ = sched.get_num_new_matched_tokens(req2, 0)
            assert ext == 32
            blocks2 = [0, 3, 1]
            sched.update_state_after_alloc(req2, KVCacheBlocks(blocks2), ext)
            meta2 = sched.build_connector_meta(SchedulerOutput([NewRequestData("t2", req2.prompt_token_ids, (blocks2,), ext)],
                                                               CachedRequestData(), {"t2": 5}))
            dst_worker.bind_connector_metadata(meta2)
            dst_worker.start_load_kv(None)
            s1, s2 = torch.as_tensor(slots[:32]), torch.as_tensor(slot_mapping(blocks2, BLOCK, 0, 32))
            for name in src:
                a = src[name].view(2, -1, HEADS, DIM)[:, s1].view(torch.int16)
                b = dst[name].view(2, -1, HEADS, DIM)[:, s2].view(torch.int16)
                assert torch.equal(a, b)
        finally:
            dst_worker.close()
    finally:
        sched.close()
        worker.close()
