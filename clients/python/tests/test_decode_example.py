"""examples/python-decode: a decode loop whose prompt K/V lives in KvDb equals the dense run under EXACT; AUTO's
deviation is measured and bounded. A short version (512-token context, 6 steps) of the example's default run."""

from __future__ import annotations

import importlib.util
import math
import os
import sys

import numpy as np
import pytest

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "python-decode", "decode.py")


@pytest.fixture(scope="module")
def example():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("kvdb_decode_example", os.path.abspath(EXAMPLE))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def report(example, server):  # type: ignore[no-untyped-def]
    return example.run(server.address, context=512, steps=6, layers=2, seed=3, local_tail=16, auto=True)


def test_exact_decode_equals_dense(report) -> None:  # type: ignore[no-untyped-def]
    exact = report["exact"]
    assert exact["tokens"] == report["reference_tokens"]
    assert exact["tokens_equal"] is True
    assert exact["token_agreement"] == 1.0
    assert exact["max_abs_logit_diff"] < 1e-3
    # Every layer of every step after the first went to KvDb, and EXACT was what ran.
    assert sum(exact["plans"].values()) == (report["steps"] - 1) * report["layers"]
    assert exact["attended_fraction"] == 1.0


def test_auto_deviation_is_reported_and_bounded(report) -> None:  # type: ignore[no-untyped-def]
    auto = report["auto"]
    assert auto["teacher_forced"] is True
    assert math.isfinite(auto["max_abs_logit_diff"])
    assert auto["max_abs_logit_diff"] < 0.5
    assert auto["token_agreement"] >= 0.8
    assert sum(auto["plans"].values()) == (report["steps"] - 1) * report["layers"]


def test_merge_of_split_window_equals_one_attention(example) -> None:  # type: ignore[no-untyped-def]
    """The merge the engine relies on, without a server: attention over [0, n) = merge of [0, m) and [m, n)."""
    import kvdb

    rng = np.random.default_rng(0)
    q = rng.standard_normal((1, 8, 64)).astype(np.float32)
    k = rng.standard_normal((100, 2, 64)).astype(np.float32)
    v = rng.standard_normal((100, 2, 64)).astype(np.float32)
    full, full_lse = example.attention(q, k, v, 0.125)
    a = kvdb.AttentionPartial.from_arrays(*example.attention(q, k[:70], v[:70], 0.125))
    b = kvdb.AttentionPartial.from_arrays(*example.attention(q, k[70:], v[70:], 0.125))
    merged = kvdb.merge(a, b)
    np.testing.assert_allclose(merged.output, full, atol=1e-5)
    np.testing.assert_allclose(merged.lse, full_lse, atol=1e-5)
