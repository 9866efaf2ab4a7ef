#!/usr/bin/env python3
"""Python client vs .NET client: append and attend throughput for the same workload against the same server.

Starts one kvdb server (src/Cli's Release build, ``kvdb serve --port 0``), runs the workload through the Python client,
then through the .NET client (bench/KvDb.Bench's ``client`` suite, pointed at the same server with --address), and
prints one JSON line per client plus one with the ratios (python / dotnet). Workload (both sides): a bf16 model with
--layers layers, 32 query heads, 8 KV heads, d = 128; --reps appends of --tokens tokens × every layer in one AppendKv
stream (1024-token messages; the same K and V for every layer), each into a fresh context deleted afterwards; then
--queries EXACT Attends (after 20 warm-up calls) of one query token over layer 0 of an --attend-ctx-token context.

    dotnet build KvDb.sln -c Release
    clients/python/.venv/bin/python clients/python/bench_client.py      # after clients/python/test.sh made the venv

append_bytes_per_s = K+V bytes appended / p50 append time; attend_p50_us = round trip as the client sees it (request
built, response decoded into numpy / float arrays); attend_server_p50_us = the server's own time (AttendStats);
attend_bytes_per_s = the attended context's K+V bytes / round-trip p50.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from typing import Dict, List

import numpy as np

import kvdb
from kvdb import server_process

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
QH, KVH, D = 32, 8, 128


def start_server(dll: str) -> "tuple[subprocess.Popen[str], str]":
    proc, address = server_process.start(dll)
    if address is None:
        proc.kill()
        raise SystemExit("kvdb did not start")
    return proc, address


def python_workload(address: str, tokens: int, layers: int, reps: int, attend_ctx: int, queries: int, model: str) -> Dict[str, object]:
    rng = np.random.default_rng(7)
    keys = kvdb.f32_to_bf16(rng.standard_normal((tokens, KVH, D), dtype=np.float32))
    values = kvdb.f32_to_bf16(rng.standard_normal((tokens, KVH, D), dtype=np.float32))
    ids = rng.integers(0, 128_000, size=tokens).astype(np.int32)
    append_bytes = 2 * keys.nbytes * layers
    with kvdb.KvDbClient(address, timeout=600) as client:
        client.create_model(model, num_layers=layers, num_query_heads=QH, num_kv_heads=KVH, head_dim=D, dtype="bf16")
        append_s: List[float] = []
        for _ in range(reps):
            ctx = client.create_context(model, namespace="client-bench", id=f"python-append-{uuid.uuid4().hex}").id
            t0 = time.perf_counter()
            client.append(ctx, ids, [(keys, values)] * layers)
            append_s.append(time.perf_counter() - t0)
            client.delete_context(ctx)

        ctx = client.create_context(model, namespace="client-bench", id=f"python-attend-{uuid.uuid4().hex}").id
        client.append_layer(ctx, 0, ids[:attend_ctx], keys[:attend_ctx], values[:attend_ctx])
        rtt: List[float] = []
        server: List[float] = []
        for i in range(-20, queries):
            q = (rng.random((1, QH, D), dtype=np.float32) * 2 - 1).astype(np.float32)
            t0 = time.perf_counter()
            part = client.attend(ctx, 0, q, plan="exact")
            dt = time.perf_counter() - t0
            if i >= 0:
                rtt.append(dt * 1e6)
                server.append(part.stats.server_micros if part.stats is not None else float("nan"))
        client.delete_context(ctx)
    p50 = statistics.median(append_s)
    rtt_p50 = statistics.median(rtt)
    attend_bytes = 2 * attend_ctx * KVH * D * 2
    return {"suite": "client", "client": "python", "tokens": tokens, "layers": layers, "reps": reps,
            "append_bytes": append_bytes, "append_p50_s": round(p50, 4), "append_bytes_per_s": round(append_bytes / p50),
            "attend_ctx": attend_ctx, "queries": queries, "attend_p50_us": round(rtt_p50, 1),
            "attend_server_p50_us": round(statistics.median(server), 1),
            "attend_bytes_per_s": round(attend_bytes / (rtt_p50 * 1e-6))}


def dotnet_workload(bench_dll: str, address: str, tokens: int, layers: int, reps: int, attend_ctx: int, queries: int, model: str) -> Dict[str, object]:
    out = subprocess.run(["dotnet", bench_dll, "client", "--address", address, "--tokens", str(tokens), "--layers", str(layers),
                          "--reps", str(reps), "--attend-ctx", str(attend_ctx), "--queries", str(queries), "--model", model],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return json.loads(lines[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=32 * 1024)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--attend-ctx", type=int, default=8 * 1024)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--address", help="use a running server instead of starting one")
    p.add_argument("--kvdb-dll", default=os.environ.get("KVDB_DLL") or os.path.join(REPO, "src", "Cli", "bin", "Release", "net10.0", "kvdb.dll"))
    p.add_argument("--bench-dll", default=os.path.join(REPO, "bench", "KvDb.Bench", "bin", "Release", "net10.0", "KvDb.Bench.dll"))
    a = p.parse_args()
    proc = None
    address = a.address
    if not address:
        proc, address = start_server(a.kvdb_dll)
    try:
        model = f"client-bench-{a.layers}"
        py = python_workload(address, a.tokens, a.layers, a.reps, a.attend_ctx, a.queries, model)
        print(json.dumps(py), flush=True)
        net = dotnet_workload(a.bench_dll, address, a.tokens, a.layers, a.reps, a.attend_ctx, a.queries, model)
        print(json.dumps(net), flush=True)
        print(json.dumps({"suite": "client", "ratio": "python/dotnet",
                          "append_bytes_per_s": round(py["append_bytes_per_s"] / net["append_bytes_per_s"], 3),  # type: ignore[operator]
                          "attend_p50_us": round(py["attend_p50_us"] / net["attend_p50_us"], 3),  # type: ignore[operator]
                          "attend_server_p50_us": round(py["attend_server_p50_us"] / net["attend_server_p50_us"], 3)}))  # type: ignore[operator]
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
