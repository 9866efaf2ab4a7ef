"""The Python client against the container image (kvdb:latest, built by `./kvdb.sh image` / `./kvdb.sh test` before the
Python tests): model -> context -> append -> prefix lookup -> attend (EXACT and AUTO against float64) -> fork -> ReadKv,
then a restart of the container on the same volume brings every acknowledged byte back. The container runs with host
networking on a free loopback port and a fresh named volume; it is removed at the end. Skipped when Docker or the image is
missing, except under CI=true, where the image must be there."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from typing import Iterator, List

import numpy as np
import pytest

import kvdb
from reference import attention, rel_l2

IMAGE = os.environ.get("KVDB_IMAGE", "kvdb:latest")
ADMIN_KEY = "python-container-admin"
LAYERS, QH, KVH, D = 2, 8, 2, 64


def docker(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check, timeout=timeout)


def image_ready() -> str:
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    try:
        if docker("image", "inspect", IMAGE, check=False, timeout=30).returncode != 0:
            return f"{IMAGE} is not built (./kvdb.sh image)"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"docker does not answer: {e}"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Container:
    def __init__(self) -> None:
        self.name = "kvdb-py-" + uuid.uuid4().hex[:8]
        self.volume = self.name + "-data"
        self.port = free_port()
        self.http = free_port()
        self.address = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        docker("run", "-d", "--name", self.name, "--network", "host", "-e", f"KVDB_ADMIN_KEY={ADMIN_KEY}", "-v", f"{self.volume}:/data",
               IMAGE, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--http-port", str(self.http), "--data", "/data")
        self.wait()

    def restart(self) -> None:
        docker("restart", "-t", "20", self.name)
        self.wait()

    def wait(self) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with kvdb.KvDbClient(self.address, api_key=ADMIN_KEY, timeout=5) as c:
                    c.list_models()
                    return
            except kvdb.KvDbError:
                time.sleep(0.5)
        logs = docker("logs", self.name, check=False).stdout[-2000:]
        raise AssertionError(f"the container did not answer within 90 s; logs:\n{logs}")

    def remove(self) -> None:
        docker("rm", "-f", self.name, check=False)
        docker("volume", "rm", "-f", self.volume, check=False)


@pytest.fixture(scope="module")
def container() -> Iterator[Container]:
    reason = image_ready()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs the container image: {reason}")
        pytest.skip(reason)
    c = Container()
    try:
        c.start()
        yield c
    finally:
        c.remove()


def test_python_client_against_the_container_survives_a_restart(container: Container) -> None:
    rng = np.random.default_rng(15)
    scale = D ** -0.5
    n = 2048
    with kvdb.KvDbClient(container.address, api_key=ADMIN_KEY, timeout=60) as client:
        client.create_model("py-image", num_layers=LAYERS, num_query_heads=QH, num_kv_heads=KVH, head_dim=D, dtype="f32", block_size=64)
        ctx = client.create_context("py-image", namespace="img")
        ids = rng.integers(0, 50_000, n).astype(np.int32)
        layers: List = [(rng.standard_normal((n, KVH, D)).astype(np.float32), rng.standard_normal((n, KVH, D)).astype(np.float32)) for _ in range(LAYERS)]
        assert client.append(ctx.id, ids, layers).num_tokens == n
        assert client.lookup_prefix("py-image", "img", ids) == n

        q = rng.standard_normal((1, QH, D)).astype(np.float32)
        for layer in range(LAYERS):
            ref, ref_lse = attention(q, layers[layer][0], layers[layer][1], scale)
            exact = client.attend(ctx.id, layer, q, plan="exact")
            assert rel_l2(exact.output, ref) < 1e-4 and np.allclose(exact.lse, ref_lse, atol=1e-3)
            auto = client.attend(ctx.id, layer, q, epsilon=0.05, delta=0.05)
            assert rel_l2(auto.output, ref) < 0.05

        fork = client.fork(ctx.id)
        assert fork.num_tokens == n
        assert client.read_layer(fork.id, 1).keys.tobytes() == layers[1][0].tobytes()

    container.restart()
    with kvdb.KvDbClient(container.address, api_key=ADMIN_KEY, timeout=60) as client:
        for layer in range(LAYERS):
            got = client.read_layer(ctx.id, layer)
            assert np.array_equal(got.token_ids, ids)
            assert got.keys.tobytes() == layers[layer][0].tobytes() and got.values.tobytes() == layers[layer][1].tobytes()
        assert client.get_context(fork.id).num_tokens == n
        assert client.lookup_prefix("py-image", "img", ids) == n
