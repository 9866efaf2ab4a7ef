"""The synchronous client against a real server: model -> context -> append -> lookup -> attend -> fork -> read -> merge."""

from __future__ import annotations

from typing import Dict, Iterator, Tuple

import grpc
import numpy as np
import pytest

import kvdb
from reference import attention, rel_l2

LAYERS, QH, KVH, D = 3, 4, 2, 32
SCALE = D ** -0.5


@pytest.fixture(scope="module")
def client(server) -> Iterator[kvdb.KvDbClient]:  # type: ignore[no-untyped-def]
    with kvdb.KvDbClient(server.address, timeout=60) as c:
        yield c


def make_kv(rng: np.random.Generator, n: int, dtype: str) -> Tuple[np.ndarray, np.ndarray]:
    k = rng.standard_normal((n, KVH, D)).astype(np.float32)
    v = rng.standard_normal((n, KVH, D)).astype(np.float32)
    if dtype == "bf16":
        return kvdb.f32_to_bf16(k), kvdb.f32_to_bf16(v)
    return k, v


@pytest.fixture(scope="module", params=["bf16", "f32"])
def loaded(request, client: kvdb.KvDbClient) -> Dict[str, object]:  # type: ignore[no-untyped-def]
    """A model of the param's dtype and a context holding 300 tokens in each of 3 layers, appended in one stream."""
    dtype = request.param
    rng = np.random.default_rng(42)
    name = f"py-model-{dtype}"
    model = client.create_model(name, num_layers=LAYERS, num_query_heads=QH, num_kv_heads=KVH, head_dim=D, dtype=dtype, block_size=16)
    assert model.dtype == kvdb.DType(kvdb.as_dtype(dtype))
    ctx = client.create_context(name, namespace="ns")
    n = 300
    ids = rng.integers(0, 50_000, n).astype(np.int32)
    layers = [make_kv(rng, n, dtype) for _ in range(LAYERS)]
    response = client.append(ctx.id, ids, layers, chunk_tokens=64)  # several messages per layer, one transaction
    assert response.num_tokens == n
    assert list(response.layer_tokens) == [n] * LAYERS
    return {"dtype": dtype, "model": name, "ctx": ctx.id, "ids": ids, "layers": layers, "n": n}


def as_f32(a: np.ndarray) -> np.ndarray:
    return kvdb.to_float32(a)


def test_context_state(client: kvdb.KvDbClient, loaded) -> None:  # type: ignore[no-untyped-def]
    ctx = client.get_context(loaded["ctx"])
    assert ctx.num_tokens == loaded["n"] and ctx.model == loaded["model"] and ctx.namespace == "ns"
    assert loaded["ctx"] in {c.id for c in client.iter_contexts(page_size=2)}
    assert loaded["model"] in {m.name for m in client.list_models()}


def test_lookup_prefix(client: kvdb.KvDbClient, loaded) -> None:  # type: ignore[no-untyped-def]
    ids = loaded["ids"]
    n = loaded["n"]
    assert client.lookup_prefix(loaded["model"], "ns", ids) == n
    diverging = np.concatenate([ids[:200], [ids[200] + 1], ids[201:]]).astype(np.int32)
    assert client.lookup_prefix(loaded["model"], "ns", diverging) == 200
    assert client.lookup_prefix(loaded["model"], "other-ns", ids) == 0
    # A new context starts from the cached prefix.
    child = client.create_context(loaded["model"], namespace="ns", prefix_token_ids=ids[:100])
    assert child.num_tokens == 100


def test_attend_exact_matches_numpy_reference(client: kvdb.KvDbClient, loaded) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    q = rng.standard_normal((3, QH, D)).astype(np.float32)
    for layer in range(LAYERS):
        k, v = loaded["layers"][layer]
        part = client.attend(loaded["ctx"], layer, q, plan="exact")
        ref, ref_lse = attention(q, as_f32(k), as_f32(v), SCALE)
        assert part.output.shape == (3, QH, D) and part.lse.shape == (3, QH)
        assert part.output.dtype == np.float32
        assert rel_l2(part.output, ref) < 1e-4
        assert np.allclose(part.lse, ref_lse, atol=1e-3)
        assert part.stats is not None and part.stats.tokens_attended == 3 * KVH * loaded["n"]


def test_attend_queries_in_bf16_and_f16(client: kvdb.KvDbClient, loaded) -> None:  # type: ignore[no-untyped-def]
    q32 = np.random.default_rng(8).standard_normal((1, QH, D)).astype(np.float32)
    q16 = kvdb.f32_to_bf16(q32)
    k, v = loaded["layers"][0]
    ref, _ = attention(kvdb.bf16_to_f32(q16), as_f32(k), as_f32(v), SCALE)
    assert rel_l2(client.attend(loaded["ctx"], 0, q16, plan="exact").output, ref) < 1e-4
    qh = q32.astype(np.float16)
    ref_h, _ = attention(qh.astype(np.float32), as_f32(k), as_f32(v), SCALE)
    assert rel_l2(client.attend(loaded["ctx"], 0, qh[0], plan=kvdb.Plan(kind=2)).output, ref_h) < 1e-4


def test_attend_auto_with_tolerance(client: kvdb.KvDbClient, loaded) -> None:  # type: ignore[no-untyped-def]
    q = np.random.default_rng(9).standard_normal((2, QH, D)).astype(np.float32)
    k, v = loaded["layers"][1]
    part = client.attend(loaded["ctx"], 1, q, epsilon=0.05, delta=0.05)
    ref, _ = attention(q, as_f32(k), as_f32(v), SCALE)
    assert part.stats is not None
    assert part.stats.epsilon == pytest.approx(0.05) and part.stats.delta == pytest.approx(0.05)
    assert len(part.stats.head_quality) == 2 * QH
    assert rel_l2(part.output, ref) < 0.05
    explain = client.explain(loaded["ctx"], 1, q, epsilon=0.05)
    assert explain.requested == kvdb.v1.attention_pb2.PLAN_KIND_AUTO and explain.layer_tokens == loaded["n"]


def test_lse_merge_equals_attention_over_union(client: kvdb.KvDbClient, loaded) -> None:  # type: ignore[no-untyped-def]
    q = np.random.default_rng(10).standard_normal((2, QH, D)).astype(np.float32)
    n, split = loaded["n"], 120
    k, v = loaded["layers"][2]
    full = client.attend(loaded["ctx"], 2, q, plan="exact")
    head = client.attend(loaded["ctx"], 2, q, plan="exact", exclude=(split, n))  # tokens [0, split)
    tail = client.attend(loaded["ctx"], 2, q, plan="exact", exclude=range(0, split))  # tokens [split, n)
    merged = kvdb.merge(head, tail)
    assert rel_l2(merged.output, full.output) < 1e-5
    assert np.allclose(merged.lse, full.lse, atol=1e-4)
    # The engine's case: the server's partial over [0, split) merged with a local partial over the rest.
    local_out, local_lse = attention(q, as_f32(k[split:]), as_f32(v[split:]), SCALE)
    local = kvdb.AttentionPartial.from_arrays(local_out, local_lse)
    ref, ref_lse = attention(q, as_f32(k), as_f32(v), SCALE)
    both = kvdb.AttentionPartial.merge(head, local)
    assert rel_l2(both.output, ref) < 1e-4 and np.allclose(both.lse, ref_lse, atol=1e-3)


def test_read_kv_round_trip_is_bit_exact(client: kvdb.KvDbClient, loaded) -> None:  # type: ignore[no-untyped-def]
    for layer in range(LAYERS):
        k, v = loaded["layers"][layer]
        got = client.read_layer(loaded["ctx"], layer)
        assert got.keys.dtype == k.dtype and got.keys.shape == k.shape
        assert np.array_equal(got.token_ids, loaded["ids"])
        assert got.keys.tobytes() == k.tobytes() and got.values.tobytes() == v.tobytes()
    chunks = list(client.read_kv(loaded["ctx"], layer=-1, start=10, end=50))
    assert sorted({c.layer for c in chunks}) == list(range(LAYERS))
    for layer in range(LAYERS):
        part = kvdb.LayerKv(*[np.concatenate(x) for x in zip(*[(c.token_ids, c.keys, c.values) for c in chunks if c.layer == layer])])
        assert part.keys.tobytes() == loaded["layers"][layer][0][10:50].tobytes()
        assert np.array_equal(part.token_ids, loaded["ids"][10:50])


def test_fork_shares_prefix_and_diverges(client: kvdb.KvDbClient, loaded) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(11)
    fork = client.fork(loaded["ctx"])
    assert fork.id != loaded["ctx"] and fork.num_tokens == loaded["n"]
    extra_ids = rng.integers(0, 50_000, 20).astype(np.int32)
    with client.open_append(fork.id) as stream:
        for layer in range(LAYERS):
            k, v = make_kv(rng, 20, loaded["dtype"])
            stream.write(layer, extra_ids, k, v)
        ack = stream.complete()
    assert ack.num_tokens == loaded["n"] + 20
    assert client.get_context(loaded["ctx"]).num_tokens == loaded["n"]
    got = client.read_layer(fork.id, 0, 0, loaded["n"])
    assert got.keys.tobytes() == loaded["layers"][0][0].tobytes()
    assert client.delete_context(fork.id) is True


def test_float32_converted_to_model_dtype(client: kvdb.KvDbClient, loaded) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(12)
    ctx = client.create_context(loaded["model"])
    k = rng.standard_normal((10, KVH, D)).astype(np.float32)
    client.append_layer(ctx.id, 0, np.arange(10), k, k, dtype=loaded["dtype"])
    got = client.read_layer(ctx.id, 0)
    assert np.array_equal(kvdb.to_float32(got.keys), kvdb.to_float32(kvdb.convert(k, loaded["dtype"])))


def test_errors_carry_status_codes(client: kvdb.KvDbClient, loaded) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(kvdb.NotFoundError) as e:
        client.get_context("no-such-context")
    assert e.value.code == grpc.StatusCode.NOT_FOUND and isinstance(e.value, kvdb.KvDbError) and e.value.details
    with pytest.raises(kvdb.KvDbError) as e:
        client.attend("no-such-context", 0, np.zeros((1, QH, D), np.float32))
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(kvdb.KvDbError) as e:
        list(client.read_kv("no-such-context"))
    assert e.value.code == grpc.StatusCode.NOT_FOUND
    with pytest.raises(kvdb.KvDbError) as e:
        client.create_model(loaded["model"], num_layers=LAYERS + 1, num_query_heads=QH, num_kv_heads=KVH, head_dim=D, dtype=loaded["dtype"])
    assert e.value.code == grpc.StatusCode.ALREADY_EXISTS
    # A stream with a bad message stores none of it: layer 0's good chunk is rolled back with it.
    ctx = client.create_context(loaded["model"])
    good = make_kv(np.random.default_rng(13), 8, loaded["dtype"])
    wrong = np.zeros((8, KVH, D), np.float16)
    with pytest.raises(kvdb.KvDbError) as e:
        client.append(ctx.id, np.arange(8), {0: good, 1: (wrong, wrong)})
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert client.get_context(ctx.id).num_tokens == 0 and list(client.get_context(ctx.id).layer_tokens) == [0] * LAYERS


def test_append_stream_errors_and_cancel(client: kvdb.KvDbClient, loaded) -> None:  # type: ignore[no-untyped-def]
    ctx = client.create_context(loaded["model"])
    wrong = np.zeros((4, KVH, D), np.float16)
    with pytest.raises(kvdb.KvDbError) as e:
        with client.open_append(ctx.id) as stream:
            stream.write(0, np.arange(4), *make_kv(np.random.default_rng(14), 4, loaded["dtype"]))
            stream.write(1, np.arange(4), wrong, wrong)
            stream.complete()
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    # Leaving the block without complete() cancels the stream: nothing is stored.
    with client.open_append(ctx.id) as stream:
        stream.write(0, np.arange(4), *make_kv(np.random.default_rng(15), 4, loaded["dtype"]))
    assert client.get_context(ctx.id).num_tokens == 0 and list(client.get_context(ctx.id).layer_tokens) == [0] * LAYERS
