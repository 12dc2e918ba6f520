"""The benchmarks' statistics (research/bench_unsloth.py), checked against values worked by hand."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "research"))
from bench_unsloth import median_interval  # noqa: E402


def test_median_interval_is_the_sign_tests():
    # n = 12: P(B <= 2) = (1 + 12 + 66) / 4096, so k = 3 covers 1 - 158/4096 = 96.1%; k = 4 (1 - 2*299/4096,
    # 85.4%) falls short of 95%
    pairs = [1.1, 2.0, 4.2, 20.5, 33.7, 2.4, 15.0, 13.5, 16.3, 13.1, 6.7, 20.0]
    low, high, coverage = median_interval(pairs)
    assert (low, high) == (2.4, 20.0)
    assert coverage == pytest.approx(1 - 158 / 4096)
    # n = 6: only the extremes, 1 - 2/64 = 96.9%; n = 5 cannot reach 95% (1 - 2/32 = 93.75%)
    assert median_interval([5, 1, 4, 2, 6, 3]) == (1, 6, pytest.approx(1 - 2 / 64))
    assert median_interval([1, 2, 3, 4, 5]) is None
    assert median_interval([1, 2, 3, 4, 5], level=0.9) == (1, 5, pytest.approx(0.9375))


def test_the_roofline_counts_the_1b_shapes_matmul_weights():
    # research/bench_roofline.py reads its bound as MFU with the FLOPs the 1B tables use: N = 1.236 B matmul
    # weights (16 blocks of q, k, v, o, gate, up, down and the tied head), 8.22 GFLOP per token at seq 2048
    from bench_roofline import SHAPES, matmul_weights

    from trainhub.metrics.flops import flops_per_token

    c = SHAPES["1b"]
    n = matmul_weights(c)
    assert n == 16 * (2 * 2048 * 2048 + 2 * 2048 * 512 + 3 * 2048 * 8192) + 2048 * 128256
    assert flops_per_token(n_frozen=0, n_trainable=n, layers=16, heads=32, head_dim=64, seq_len=2048) == \
        pytest.approx(8.22e9, rel=1e-3)
