"""API keys: a server with KVDB_ADMIN_KEY, a tenant created through the Tenants service, bearer metadata."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

import kvdb
from conftest import ADMIN_KEY

QH, KVH, D = 2, 1, 8


def test_keys_are_required_and_tenants_are_isolated(auth_server) -> None:  # type: ignore[no-untyped-def]
    with kvdb.KvDbClient(auth_server.address, timeout=30) as anonymous:
        with pytest.raises(kvdb.UnauthenticatedError) as e:
            anonymous.list_models()
        assert e.value.code == grpc.StatusCode.UNAUTHENTICATED

    with kvdb.KvDbClient(auth_server.address, api_key=ADMIN_KEY, timeout=30) as admin:
        tenant, key = admin.create_tenant("pyacme")
        other_tenant, other_key = admin.create_tenant("pyother")
        assert tenant.name == "pyacme" and key and key != other_key
        assert {"pyacme", "pyother"} <= {t.name for t in admin.list_tenants()}
        admin.create_model("py-auth", num_layers=1, num_query_heads=QH, num_kv_heads=KVH, head_dim=D, dtype="f32")

    with kvdb.KvDbClient(auth_server.address, api_key=key, timeout=30) as acme, \
            kvdb.KvDbClient(auth_server.address, api_key=other_key, timeout=30) as other:
        ctx = acme.create_context("py-auth", id="acme-ctx")
        kv = np.ones((4, KVH, D), np.float32)
        assert acme.append_layer(ctx.id, 0, [1, 2, 3, 4], kv, kv).num_tokens == 4
        part = acme.attend(ctx.id, 0, np.ones((1, QH, D), np.float32), plan="exact")
        assert np.allclose(part.output, 1.0)
        assert acme.get_context(ctx.id).num_tokens == 4
        with pytest.raises(kvdb.KvDbError) as e:
            other.get_context(ctx.id)
        assert e.value.code == grpc.StatusCode.NOT_FOUND
        assert ctx.id not in {c.id for c in other.iter_contexts()}
        with pytest.raises(kvdb.KvDbError) as e:
            acme.create_tenant("pyintruder")
        assert e.value.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)

    with kvdb.KvDbClient(auth_server.address, api_key="kvdb_wrong_key", timeout=30) as wrong:
        with pytest.raises(kvdb.KvDbError) as e:
            wrong.list_models()
        assert e.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_async_client_sends_the_key(auth_server) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    async def run() -> None:
        async with kvdb.AsyncKvDbClient(auth_server.address, api_key=ADMIN_KEY, timeout=30) as admin:
            _, key = await admin.create_tenant("pyasync")
        async with kvdb.AsyncKvDbClient(auth_server.address, api_key=key, timeout=30) as tenant:
            ctx = await tenant.create_context("py-auth") if await _has_model(tenant) else None
            assert ctx is not None and (await tenant.get_context(ctx.id)).num_tokens == 0
        async with kvdb.AsyncKvDbClient(auth_server.address, timeout=30) as anonymous:
            with pytest.raises(kvdb.KvDbError) as e:
                await anonymous.list_models()
            assert e.value.code == grpc.StatusCode.UNAUTHENTICATED

    async def _has_model(client: kvdb.AsyncKvDbClient) -> bool:
        try:
            await client.get_model("py-auth")
            return True
        except kvdb.NotFoundError:
            await client.create_model("py-auth", num_layers=1, num_query_heads=QH, num_kv_heads=KVH, head_dim=D, dtype="f32")
            return True

    asyncio.run(asyncio.wait_for(run(), timeout=60))
