"""Offline checks of the dtype helpers and the LSE merge (no server)."""

from __future__ import annotations

import numpy as np

import kvdb
from reference import attention, rel_l2


def test_bf16_round_trip_and_rounding() -> None:
    x = np.array([1.0, -2.5, 3.140625, 0.0, -0.0, np.inf, -np.inf], dtype=np.float32)
    bits = kvdb.f32_to_bf16(x)
    assert bits.dtype == np.uint16
    assert np.array_equal(kvdb.bf16_to_f32(bits), x)  # all exactly representable in bf16
    # Round to nearest even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 and goes to the even one (1.0).
    assert kvdb.bf16_to_f32(kvdb.f32_to_bf16(np.float32(1 + 2 ** -8)))[()] == 1.0
    assert kvdb.bf16_to_f32(kvdb.f32_to_bf16(np.float32(1 + 3 * 2 ** -8)))[()] == np.float32(1 + 2 ** -6)
    assert np.isnan(kvdb.bf16_to_f32(kvdb.f32_to_bf16(np.array([np.nan], dtype=np.float32))))[0]


def test_tensor_views_are_zero_copy_and_typed() -> None:
    k = kvdb.f32_to_bf16(np.random.default_rng(0).standard_normal((5, 2, 4)).astype(np.float32))
    t = kvdb.to_tensor(k)
    assert t.dtype == kvdb.DType.BF16 and list(t.shape) == [5, 2, 4] and len(t.data) == k.nbytes
    back = kvdb.from_tensor(t)
    assert back.dtype == np.uint16 and not back.flags.writeable and np.array_equal(back, k)
    assert kvdb.to_tensor(np.zeros((1, 2), np.float16)).dtype == kvdb.DType.F16
    assert kvdb.to_tensor(np.zeros((1, 2), np.float64), dtype="f32").dtype == kvdb.DType.F32
    # float32 converted to the model's bf16 on the way in
    assert kvdb.to_tensor(np.ones((1, 2), np.float32), dtype="bf16").dtype == kvdb.DType.BF16


def test_merge_of_disjoint_partials_equals_attention_over_union() -> None:
    rng = np.random.default_rng(1)
    q = rng.standard_normal((2, 4, 8))
    k = rng.standard_normal((30, 2, 8))
    v = rng.standard_normal((30, 2, 8))
    scale = 8 ** -0.5
    o1, l1 = attention(q, k[:11], v[:11], scale)
    o2, l2 = attention(q, k[11:], v[11:], scale)
    full, lse = attention(q, k, v, scale)
    merged = kvdb.merge(kvdb.AttentionPartial.from_arrays(o1, l1), kvdb.AttentionPartial.from_arrays(o2, l2))
    assert rel_l2(merged.output, full) < 1e-5
    assert np.allclose(merged.lse, lse, atol=1e-5)
    empty = kvdb.AttentionPartial.empty(2, 4, 8)
    same = kvdb.merge(empty, merged, empty)
    assert np.array_equal(same.output, merged.output) and np.array_equal(same.lse, merged.lse)
