"""Partial attention results and their log-sum-exp merge (the .NET client's AttentionPartial)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import numpy.typing as npt

from kvdb.v1 import attention_pb2


@dataclass(frozen=True)
class AttentionPartial:
    """Attention over some set of tokens: ``output`` f32 [q, heads, dim] and ``lse`` f32 [q, heads] (natural log).

    Engines merge KvDb's partial with the one over their local window with :meth:`merge`. ``selected`` /
    ``selection_counts`` are filled when the request asked for the selection.
    """

    output: npt.NDArray[np.float32]
    lse: npt.NDArray[np.float32]
    stats: Optional[attention_pb2.AttendStats] = None
    selected: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    selection_counts: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, dtype=np.int32))

    @property
    def num_queries(self) -> int:
        return int(self.output.shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.output.shape[1])

    @property
    def head_dim(self) -> int:
        return int(self.output.shape[2])

    @staticmethod
    def empty(num_queries: int, num_heads: int, head_dim: int) -> "AttentionPartial":
        """The partial over no tokens (lse = -inf, output 0): the identity of :meth:`merge`."""
        return AttentionPartial(np.zeros((num_queries, num_heads, head_dim), dtype=np.float32),
                                np.full((num_queries, num_heads), -np.inf, dtype=np.float32))

    @staticmethod
    def from_arrays(output: npt.ArrayLike, lse: npt.ArrayLike) -> "AttentionPartial":
        """A partial computed elsewhere (e.g. the engine's local window): output [q, heads, dim], lse [q, heads]."""
        o = np.asarray(output, dtype=np.float32)
        s = np.asarray(lse, dtype=np.float32)
        if o.ndim != 3 or s.shape != o.shape[:2]:
            raise ValueError(f"output must be [q, heads, dim] and lse [q, heads]; got {o.shape} and {s.shape}")
        return AttentionPartial(o, s)

    @staticmethod
    def merge(a: "AttentionPartial", b: "AttentionPartial") -> "AttentionPartial":
        """Attention over the union of two disjoint token sets.

        m = max(lse1, lse2), w_i = exp(lse_i - m), o = (w1*o1 + w2*o2) / (w1 + w2), lse = m + log(w1 + w2), in float64;
        a side with lse = -inf contributes nothing.
        """
        if a.output.shape != b.output.shape or a.lse.shape != b.lse.shape:
            raise ValueError(f"partials must have the same [q, heads, dim] shape; got {a.output.shape} and {b.output.shape}")
        l1 = a.lse.astype(np.float64)
        l2 = b.lse.astype(np.float64)
        m = np.maximum(l1, l2)
        finite = np.isfinite(m)
        m0 = np.where(finite, m, 0.0)
        with np.errstate(invalid="ignore", over="ignore"):
            w1 = np.where(np.isneginf(l1), 0.0, np.exp(l1 - m0))
            w2 = np.where(np.isneginf(l2), 0.0, np.exp(l2 - m0))
        total = w1 + w2
        safe = np.where(total > 0, total, 1.0)
        out = (w1[..., None] * a.output.astype(np.float64) + w2[..., None] * b.output.astype(np.float64)) / safe[..., None]
        out = np.where((total > 0)[..., None], out, a.output)
        lse = np.where(total > 0, m0 + np.log(safe), -np.inf)
        return AttentionPartial(out.astype(np.float32), lse.astype(np.float32))


def merge(*partials: AttentionPartial) -> AttentionPartial:
    """Merges any number of partials over pairwise disjoint token sets into the attention over their union."""
    if not partials:
        raise ValueError("merge needs at least one partial")
    result = partials[0]
    for p in partials[1:]:
        result = AttentionPartial.merge(result, p)
    return result


def merge_all(partials: Sequence[AttentionPartial]) -> AttentionPartial:
    """:func:`merge` over a sequence."""
    return merge(*partials)
