"""numpy float64 reference attention."""

from __future__ import annotations

from typing import Tuple

import numpy as np


def attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float) -> Tuple[np.ndarray, np.ndarray]:
    """Softmax attention of q [Q, H, D] over k, v [N, KVH, D] (GQA: query head h reads KV head h // (H / KVH)), in float64.
    Returns output [Q, H, D] and lse [Q, H] (natural log)."""
    q = q.astype(np.float64)
    k = k.astype(np.float64)
    v = v.astype(np.float64)
    heads, kv_heads = q.shape[1], k.shape[1]
    group = heads // kv_heads
    kh = np.repeat(k, group, axis=1)  # [N, H, D]
    vh = np.repeat(v, group, axis=1)
    scores = np.einsum("qhd,nhd->qhn", q, kh) * scale
    m = scores.max(axis=-1, keepdims=True)
    w = np.exp(scores - m)
    total = w.sum(axis=-1, keepdims=True)
    out = np.einsum("qhn,nhd->qhd", w / total, vh)
    lse = (m + np.log(total))[..., 0]
    return out, lse


def rel_l2(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest relative L2 error over (query, head) rows."""
    a = actual.astype(np.float64).reshape(-1, actual.shape[-1])
    e = expected.astype(np.float64).reshape(-1, expected.shape[-1])
    return float(np.max(np.linalg.norm(a - e, axis=1) / np.maximum(np.linalg.norm(e, axis=1), 1e-30)))
