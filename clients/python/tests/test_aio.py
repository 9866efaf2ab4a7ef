"""The asyncio client (grpc.aio) against a real server."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

import kvdb
from reference import attention, rel_l2

QH, KVH, D = 4, 2, 16


def test_async_flow(server) -> None:  # type: ignore[no-untyped-def]
    async def run() -> None:
        rng = np.random.default_rng(3)
        async with kvdb.AsyncKvDbClient(server.address, timeout=60) as client:
            await client.create_model("py-aio", num_layers=2, num_query_heads=QH, num_kv_heads=KVH, head_dim=D, dtype="bf16")
            ctx = await client.create_context("py-aio", namespace="aio")
            n = 150
            ids = rng.integers(0, 1000, n)
            k32 = rng.standard_normal((2, n, KVH, D)).astype(np.float32)
            v32 = rng.standard_normal((2, n, KVH, D)).astype(np.float32)
            ack = await client.append(ctx.id, ids, (k32, v32), dtype="bf16", chunk_tokens=40)  # stacked layers, f32 -> bf16
            assert list(ack.layer_tokens) == [n, n]
            assert await client.lookup_prefix("py-aio", "aio", ids) == n

            k = kvdb.f32_to_bf16(k32[1])
            v = kvdb.f32_to_bf16(v32[1])
            q = rng.standard_normal((2, QH, D)).astype(np.float32)
            exact, auto = await asyncio.gather(client.attend(ctx.id, 1, q, plan="exact"),
                                               client.attend(ctx.id, 1, q, epsilon=0.05))
            ref, ref_lse = attention(q, kvdb.bf16_to_f32(k), kvdb.bf16_to_f32(v), D ** -0.5)
            assert rel_l2(exact.output, ref) < 1e-4 and np.allclose(exact.lse, ref_lse, atol=1e-3)
            assert rel_l2(auto.output, ref) < 0.05

            head = await client.attend(ctx.id, 1, q, plan="exact", exclude=(50, n))
            tail = await client.attend(ctx.id, 1, q, plan="exact", exclude=(0, 50))
            assert rel_l2(kvdb.merge(head, tail).output, exact.output) < 1e-5

            layer = await client.read_layer(ctx.id, 1)
            assert layer.keys.tobytes() == k.tobytes() and layer.values.tobytes() == v.tobytes()

            fork = await client.fork(ctx.id, new_id=ctx.id + "-fork")
            assert fork.id == ctx.id + "-fork" and fork.num_tokens == n
            async with client.open_append(fork.id) as stream:
                for layer_index in range(2):
                    await stream.write(layer_index, [1, 2, 3], np.zeros((3, KVH, D), np.uint16), np.zeros((3, KVH, D), np.uint16))
                assert (await stream.complete()).num_tokens == n + 3
            assert (await client.get_context(ctx.id)).num_tokens == n

            with pytest.raises(kvdb.KvDbError) as e:
                await client.get_context("no-such-context")
            assert e.value.code == grpc.StatusCode.NOT_FOUND
            with pytest.raises(kvdb.NotFoundError):
                [c async for c in client.read_kv("no-such-context")]

    asyncio.run(asyncio.wait_for(run(), timeout=90))
