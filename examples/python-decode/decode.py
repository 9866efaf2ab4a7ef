#!/usr/bin/env python3
"""An engine-side decode loop whose long context lives in KvDb.

A small random-weight transformer (numpy, float32; RMSNorm, RoPE, GQA attention, SiLU MLP) prefills a prompt of
``--context`` tokens densely, appends every layer's K/V of the prompt to a KvDb context (f32), and then decodes
greedily. At each decode step and layer the engine

  1. sends the layer's query to KvDb (``client.attend``, skipping the prompt tail it keeps locally with ``exclude``),
  2. attends its local window itself (the last ``--local-tail`` prompt tokens and every token generated so far),
  3. merges the two partials by their log-sum-exp (``kvdb.merge``) and continues the forward pass.

A dense reference decodes the same model with the whole cache local (attention in float64). With ``plan=exact`` the
generated tokens must equal the reference's and the logits agree to float tolerance; with AUTO the script reports how
far the logits moved (AUTO runs teacher-forced on the reference's tokens, so every step compares like with like).

Run (server built with ``dotnet build KvDb.sln -c Release``):
    python3 examples/python-decode/decode.py --spawn                     # starts a kvdb server on a free port
    python3 examples/python-decode/decode.py --address http://127.0.0.1:50051
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


@dataclass(frozen=True)
class Config:
    layers: int = 2
    query_heads: int = 8
    kv_heads: int = 2
    head_dim: int = 64
    vocab: int = 256
    mlp: int = 1024
    qk_gain: float = 2.0  # scales the query projection: peakier attention than plain random weights give
    rope_base: float = 10000.0

    @property
    def d_model(self) -> int:
        return self.query_heads * self.head_dim

    @property
    def scale(self) -> float:
        return self.head_dim ** -0.5


class Model:
    """Random weights from a fixed seed. Everything runs in float32 except the attention softmax (see ``attention``)."""

    def __init__(self, cfg: Config, seed: int = 0) -> None:
        self.cfg = cfg
        rng = np.random.default_rng(seed)
        d, f = cfg.d_model, cfg.mlp

        def w(rows: int, cols: int, gain: float = 1.0) -> np.ndarray:
            return (rng.standard_normal((rows, cols)) * gain / np.sqrt(rows)).astype(np.float32)

        self.embedding = rng.standard_normal((cfg.vocab, d)).astype(np.float32)
        self.wq = [w(d, cfg.query_heads * cfg.head_dim, cfg.qk_gain) for _ in range(cfg.layers)]
        self.wk = [w(d, cfg.kv_heads * cfg.head_dim) for _ in range(cfg.layers)]
        self.wv = [w(d, cfg.kv_heads * cfg.head_dim) for _ in range(cfg.layers)]
        self.wo = [w(d, d, 0.5) for _ in range(cfg.layers)]
        self.w1 = [w(d, f) for _ in range(cfg.layers)]
        self.w2 = [w(f, d, 0.5) for _ in range(cfg.layers)]
        self.unembed = w(d, cfg.vocab, 4.0)
        half = cfg.head_dim // 2
        self.inv_freq = (1.0 / cfg.rope_base ** (np.arange(half, dtype=np.float64) / half))

    @staticmethod
    def rmsnorm(x: np.ndarray) -> np.ndarray:
        return (x / np.sqrt(np.mean(x.astype(np.float64) ** 2, axis=-1, keepdims=True) + 1e-6)).astype(np.float32)

    def rope(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Rotary embedding of x [n, heads, head_dim] at positions [n] (rotate-half convention)."""
        angles = positions.astype(np.float64)[:, None] * self.inv_freq[None, :]
        cos = np.cos(angles)[:, None, :].astype(np.float32)
        sin = np.sin(angles)[:, None, :].astype(np.float32)
        half = self.cfg.head_dim // 2
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)

    def qkv(self, layer: int, x: np.ndarray, positions: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.cfg
        h = self.rmsnorm(x)
        q = (h @ self.wq[layer]).reshape(-1, c.query_heads, c.head_dim)
        k = (h @ self.wk[layer]).reshape(-1, c.kv_heads, c.head_dim)
        v = (h @ self.wv[layer]).reshape(-1, c.kv_heads, c.head_dim)
        return self.rope(q, positions), self.rope(k, positions), v

    def finish_layer(self, layer: int, x: np.ndarray, attn: np.ndarray) -> np.ndarray:
        x = x + attn.reshape(x.shape[0], -1).astype(np.float32) @ self.wo[layer]
        h = self.rmsnorm(x) @ self.w1[layer]
        h = h / (1.0 + np.exp(-h))  # SiLU
        return x + h @ self.w2[layer]

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.rmsnorm(x) @ self.unembed


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float, causal_offset: Optional[int] = None,
              dtype: type = np.float64) -> Tuple[np.ndarray, np.ndarray]:
    """Softmax attention of q [Q, H, D] over k, v [N, KVH, D] (query head h reads KV head h // (H / KVH)).
    ``causal_offset``: query i sits at key position causal_offset + i and sees keys <= it. Returns output [Q, H, D]
    and lse [Q, H] (natural log), in ``dtype``."""
    group = q.shape[1] // k.shape[1]
    kh = np.repeat(k.astype(dtype), group, axis=1)
    vh = np.repeat(v.astype(dtype), group, axis=1)
    scores = np.matmul(q.astype(dtype).transpose(1, 0, 2), kh.transpose(1, 2, 0)) * scale  # [H, Q, N]
    if causal_offset is not None:
        mask = np.arange(k.shape[0])[None, :] > (causal_offset + np.arange(q.shape[0]))[:, None]
        scores[:, mask] = -np.inf
    m = scores.max(axis=-1, keepdims=True)
    w = np.exp(scores - m)
    total = w.sum(axis=-1, keepdims=True)
    out = np.matmul(w / total, vh.transpose(1, 0, 2)).transpose(1, 0, 2)  # [Q, H, D]
    lse = (m + np.log(total))[..., 0].T
    return out, lse


@dataclass
class Prefill:
    tokens: np.ndarray           # prompt token ids [n]
    keys: List[np.ndarray]       # per layer [n, kv_heads, head_dim] f32 (after RoPE: what the engine caches)
    values: List[np.ndarray]
    last_logits: np.ndarray      # logits after the last prompt token [vocab]


def prefill(model: Model, tokens: np.ndarray, chunk: int = 512) -> Prefill:
    """Dense causal forward pass over the prompt (float32 attention, in query chunks)."""
    c = model.cfg
    positions = np.arange(len(tokens))
    x = model.embedding[tokens]
    keys, values = [], []
    for layer in range(c.layers):
        q, k, v = model.qkv(layer, x, positions)
        keys.append(np.ascontiguousarray(k))
        values.append(np.ascontiguousarray(v))
        attn = np.empty_like(q)
        for s in range(0, len(tokens), chunk):
            e = min(s + chunk, len(tokens))
            attn[s:e] = attention(q[s:e], k[:e], v[:e], c.scale, causal_offset=s, dtype=np.float32)[0]
        x = model.finish_layer(layer, x, attn)
    return Prefill(tokens, keys, values, model.logits(x[-1:])[0])


# attend(layer, q [1, H, D], k_new [1, KVH, D], v_new [1, KVH, D]) -> attention output [1, H, D] over the whole history
AttendFn = Callable[[int, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def decode(model: Model, pre: Prefill, steps: int, attend: AttendFn,
           force: Optional[Sequence[int]] = None) -> Tuple[List[int], np.ndarray]:
    """Greedy decode of ``steps`` tokens. The input of step i is the previous step's argmax, or ``force[i-1]`` when
    forced (teacher forcing). Returns the generated tokens and the logits [steps, vocab] that chose them."""
    n = len(pre.tokens)
    logits = [pre.last_logits]
    tokens = [int(np.argmax(pre.last_logits))]
    for i in range(1, steps):
        token = tokens[-1] if force is None else int(force[i - 1])
        pos = np.array([n + i - 1])
        x = model.embedding[[token]]
        for layer in range(model.cfg.layers):
            q, k, v = model.qkv(layer, x, pos)
            x = model.finish_layer(layer, x, attend(layer, q, k, v))
        logits.append(model.logits(x)[0])
        tokens.append(int(np.argmax(logits[-1])))
    return tokens, np.stack(logits)


def dense_attend(model: Model, pre: Prefill) -> AttendFn:
    """Reference: the whole cache local, attention in float64."""
    keys = [k.copy() for k in pre.keys]
    values = [v.copy() for v in pre.values]

    def attend(layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
        keys[layer] = np.concatenate([keys[layer], k])
        values[layer] = np.concatenate([values[layer], v])
        return attention(q, keys[layer], values[layer], model.cfg.scale)[0].astype(np.float32)

    return attend


class KvDbEngine:
    """The engine side: the prompt's K/V in a KvDb context, a local window of the last ``local_tail`` prompt tokens
    (excluded from KvDb's side) plus every generated token."""

    def __init__(self, client, model: Model, pre: Prefill, local_tail: int, model_name: str = "") -> None:  # type: ignore[no-untyped-def]
        import kvdb

        c = model.cfg
        self.kvdb, self.client, self.model = kvdb, client, model
        self.model_name = model_name or f"decode-example-l{c.layers}-h{c.query_heads}-kv{c.kv_heads}-d{c.head_dim}"
        client.create_model(self.model_name, num_layers=c.layers, num_query_heads=c.query_heads, num_kv_heads=c.kv_heads,
                            head_dim=c.head_dim, dtype="f32", softmax_scale=c.scale)
        self.context_id = client.create_context(self.model_name, namespace="decode-example", id=f"decode-{uuid.uuid4().hex}").id
        n = len(pre.tokens)
        t0 = time.perf_counter()
        client.append(self.context_id, pre.tokens.astype(np.int64), [(k, v) for k, v in zip(pre.keys, pre.values)])
        self.append_s = time.perf_counter() - t0
        self.tail = max(0, min(local_tail, n))
        self.exclude = (n - self.tail, n) if self.tail else None
        self.local_k = [k[n - self.tail:].copy() for k in pre.keys]
        self.local_v = [v[n - self.tail:].copy() for v in pre.values]
        self.plans: Dict[str, int] = {}
        self.attend_calls = 0
        self.attend_s = 0.0
        self.stored = n
        self.tokens_attended = 0  # what KvDb's answers rest on (AttendStats.tokens_attended, summed over KV heads' plans)
        self.tokens_stored = 0    # the tokens those calls could attend, times the KV heads (as tokens_attended counts)

    def close(self) -> None:
        try:
            self.client.delete_context(self.context_id)
        except Exception:  # noqa: BLE001 - cleanup only
            pass

    def attend_fn(self, plan: Optional[str], **plan_fields: float) -> AttendFn:
        kvdb = self.kvdb
        local_k = [k.copy() for k in self.local_k]
        local_v = [v.copy() for v in self.local_v]

        def attend(layer: int, q: np.ndarray, k: np.ndarray, v: np.ndarray) -> np.ndarray:
            local_k[layer] = np.concatenate([local_k[layer], k])
            local_v[layer] = np.concatenate([local_v[layer], v])
            t0 = time.perf_counter()
            remote = self.client.attend(self.context_id, layer, q, plan=plan, exclude=self.exclude, **plan_fields)
            self.attend_s += time.perf_counter() - t0
            self.attend_calls += 1
            if remote.stats is not None:
                self.plans[remote.stats.plan] = self.plans.get(remote.stats.plan, 0) + 1
                self.tokens_attended += remote.stats.tokens_attended
                self.tokens_stored += (self.stored - self.tail) * self.model.cfg.kv_heads
            out, lse = attention(q, local_k[layer], local_v[layer], self.model.cfg.scale)
            return kvdb.merge(remote, kvdb.AttentionPartial.from_arrays(out, lse)).output

        return attend


def compare(reference_tokens: Sequence[int], reference_logits: np.ndarray, tokens: Sequence[int], logits: np.ndarray) -> Dict[str, object]:
    diff = np.abs(logits.astype(np.float64) - reference_logits.astype(np.float64))
    agree = [int(a == b) for a, b in zip(tokens, reference_tokens)]
    return {"max_abs_logit_diff": float(diff.max()),
            "max_rel_logit_diff": float(diff.max() / max(np.abs(reference_logits).max(), 1e-30)),
            "token_agreement": float(np.mean(agree)),
            "tokens_equal": list(tokens) == list(reference_tokens)}


def run(address: str, *, context: int = 2048, steps: int = 16, layers: int = 2, seed: int = 0, local_tail: int = 64,
        auto: bool = True, epsilon: Optional[float] = None, log: Callable[[str], None] = lambda s: None) -> Dict[str, object]:
    """Prefill, KvDb EXACT decode, dense decode, and (``auto``) a teacher-forced AUTO decode; returns the report."""
    import kvdb

    cfg = Config(layers=layers)
    model = Model(cfg, seed)
    prompt = np.random.default_rng(seed + 1).integers(0, cfg.vocab, size=context)
    t0 = time.perf_counter()
    pre = prefill(model, prompt)
    prefill_s = time.perf_counter() - t0
    log(f"prefill: {context} tokens x {layers} layers in {prefill_s:.1f} s")

    ref_tokens, ref_logits = decode(model, pre, steps, dense_attend(model, pre))
    report: Dict[str, object] = {"context": context, "steps": steps, "layers": layers, "query_heads": cfg.query_heads,
                                 "kv_heads": cfg.kv_heads, "head_dim": cfg.head_dim, "vocab": cfg.vocab,
                                 "local_tail": local_tail, "seed": seed, "prefill_s": round(prefill_s, 3),
                                 "reference_tokens": ref_tokens}
    with kvdb.KvDbClient(address, timeout=120) as client:
        engine = KvDbEngine(client, model, pre, local_tail)
        try:
            report["append_s"] = round(engine.append_s, 3)
            report["append_bytes"] = int(sum(k.nbytes + v.nbytes for k, v in zip(pre.keys, pre.values)))
            tokens, logits = decode(model, pre, steps, engine.attend_fn("exact"))
            exact = compare(ref_tokens, ref_logits, tokens, logits)
            exact.update(tokens=tokens, plans=dict(engine.plans), attended_fraction=round(engine.tokens_attended / max(engine.tokens_stored, 1), 4),
                         attend_p_call_ms=round(1e3 * engine.attend_s / max(engine.attend_calls, 1), 3))
            report["exact"] = exact
            log(f"exact: {json.dumps({k: v for k, v in exact.items() if k != 'tokens'})}")
            if auto:
                engine.plans, engine.attend_calls, engine.attend_s, engine.tokens_attended, engine.tokens_stored = {}, 0, 0.0, 0, 0
                fields = {} if epsilon is None else {"epsilon": epsilon}
                tokens, logits = decode(model, pre, steps, engine.attend_fn(None, **fields), force=ref_tokens)
                a = compare(ref_tokens, ref_logits, tokens, logits)
                a.update(tokens=tokens, plans=dict(engine.plans), attended_fraction=round(engine.tokens_attended / max(engine.tokens_stored, 1), 4), teacher_forced=True, epsilon=epsilon,
                         attend_p_call_ms=round(1e3 * engine.attend_s / max(engine.attend_calls, 1), 3))
                report["auto"] = a
                log(f"auto: {json.dumps({k: v for k, v in a.items() if k != 'tokens'})}")
        finally:
            engine.close()
    return report


class Server:
    """``dotnet kvdb.dll serve --port 0`` as a child process (for --spawn)."""

    def __init__(self, dll: Optional[str] = None, extra: Sequence[str] = ()) -> None:
        dll = dll or os.environ.get("KVDB_DLL") or os.path.join(REPO, "src", "Cli", "bin", "Release", "net10.0", "kvdb.dll")
        if not os.path.exists(dll):
            raise SystemExit(f"{dll} is missing: dotnet build KvDb.sln -c Release")
        from kvdb import server_process

        self.process, address = server_process.start(dll, extra)
        if address is None:
            self.stop()
            raise SystemExit("kvdb did not start")
        self.address: str = address

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", help="a running server, e.g. http://127.0.0.1:50051")
    p.add_argument("--spawn", action="store_true", help="start src/Cli's Release kvdb.dll on a free port (KVDB_DLL overrides)")
    p.add_argument("--context", type=int, default=2048, help="prompt tokens prefilled and stored in KvDb")
    p.add_argument("--steps", type=int, default=16, help="tokens to decode")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--local-tail", type=int, default=64, help="last prompt tokens the engine keeps local (excluded from KvDb's side)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epsilon", type=float, default=None, help="AUTO's tolerance (server default when absent)")
    p.add_argument("--no-auto", action="store_true")
    args = p.parse_args(argv)
    if not args.address and not args.spawn:
        p.error("give --address or --spawn")

    def log(s: str) -> None:
        print(s, file=sys.stderr, flush=True)

    def go(address: str) -> Dict[str, object]:
        return run(address, context=args.context, steps=args.steps, layers=args.layers, seed=args.seed,
                   local_tail=args.local_tail, auto=not args.no_auto, epsilon=args.epsilon, log=log)

    if args.spawn:
        with Server() as server:
            report = go(server.address)
    else:
        report = go(args.address)
    print(json.dumps(report))
    exact = report["exact"]
    return 0 if exact["tokens_equal"] and exact["max_abs_logit_diff"] < 1e-3 else 1  # type: ignore[index,operator]


if __name__ == "__main__":
    sys.exit(main())
