"""`lr_at` against hand-computed learning rates.

peak = 2.0 (a power of two, so warmup fractions are exact), warmup 4, total 14 steps (0..13):
the decay runs over steps 4..13, span = 14 - 1 - 4 = 9, and ends at peak * min_lr_ratio.
"""

from __future__ import annotations

import pytest

from trainhub.engine.schedule import lr_at
from trainhub.job import Schedule

PEAK, TOTAL = 2.0, 14


def lr(step: int, total: int = TOTAL, **schedule) -> float:
    return lr_at(step, peak=PEAK, total=total, schedule=Schedule(**schedule))


COSINE = {"warmup_steps": 4, "decay": "cosine", "min_lr_ratio": 0.1}


def test_warmup_is_linear_from_peak_over_warmup_to_peak():
    assert [lr(s, **COSINE) for s in range(4)] == [0.5, 1.0, 1.5, 2.0]


def test_first_decay_step_is_the_peak():
    assert lr(4, **COSINE) == 2.0


def test_cosine_ends_at_min_lr_on_the_last_step():
    assert lr(13, **COSINE) == pytest.approx(0.2, abs=1e-15)


def test_cosine_midpoint():
    # total 15: span 10, step 9 is progress 0.5 -> floor + (peak - floor) / 2 = 0.2 + 0.9 = 1.1
    assert lr(9, total=15, **COSINE) == pytest.approx(1.1, abs=1e-15)


def test_cosine_at_thirds():
    # span 9: step 7 is progress 1/3, cos(pi/3) = 1/2 -> 0.2 + 1.8 * 0.5 * 1.5 = 1.55;
    # step 10 is progress 2/3, cos(2 pi/3) = -1/2 -> 0.2 + 1.8 * 0.5 * 0.5 = 0.65
    assert lr(7, **COSINE) == pytest.approx(1.55, abs=1e-12)
    assert lr(10, **COSINE) == pytest.approx(0.65, abs=1e-12)


def test_cosine_at_a_quarter_and_a_fifth():
    # total 13: span 8, step 6 is progress 1/4, cos(pi/4) = sqrt(2)/2 = 0.7071067811865476
    #   -> 0.2 + 0.9 * 1.7071067811865476 = 1.7363961030678928
    assert lr(6, total=13, **COSINE) == pytest.approx(1.7363961030678928, abs=1e-12)
    # total 15: span 10, step 6 is progress 1/5, cos(pi/5) = (1 + sqrt(5)) / 4 = 0.8090169943749475
    #   -> 0.2 + 0.9 * 1.8090169943749475 = 1.8281152949374527
    assert lr(6, total=15, **COSINE) == pytest.approx(1.8281152949374527, abs=1e-12)


def test_cosine_is_non_increasing_after_warmup():
    values = [lr(s, **COSINE) for s in range(4, TOTAL)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))


def test_past_the_last_step_stays_at_the_floor():
    assert lr(20, **COSINE) == pytest.approx(0.2, abs=1e-15)


def test_linear_decay():
    linear = {**COSINE, "decay": "linear"}
    # progress (s - 4) / 9; lr = 2 - 1.8 * progress
    assert lr(4, **linear) == 2.0
    assert lr(7, **linear) == pytest.approx(2.0 - 1.8 * 3 / 9, abs=1e-15)  # 1.4
    assert lr(7, **linear) == pytest.approx(1.4, abs=1e-15)
    assert lr(13, **linear) == pytest.approx(0.2, abs=1e-15)


def test_constant_decay_holds_the_peak():
    constant = {**COSINE, "decay": "constant"}
    assert [lr(s, **constant) for s in range(TOTAL)] == [0.5, 1.0, 1.5] + [2.0] * 11


def test_no_warmup_starts_at_the_peak():
    assert lr(0, warmup_steps=0, decay="cosine", min_lr_ratio=0.0) == 2.0
    # span = 10 - 1 = 9; the last step (9) reaches the floor 0.
    assert lr(9, total=10, warmup_steps=0, decay="cosine", min_lr_ratio=0.0) == pytest.approx(0.0, abs=1e-15)
    assert lr(3, total=10, warmup_steps=0, decay="linear", min_lr_ratio=0.5) == pytest.approx(2.0 - 1.0 / 3,
                                                                                              abs=1e-15)


def test_single_step_run():
    # total 1, no warmup: the only step is step 0; span is clamped to 1 so progress is 0.
    assert lr(0, total=1, warmup_steps=0, decay="cosine", min_lr_ratio=0.1) == 2.0


def test_warmup_longer_than_the_run():
    # Every step is in warmup: lr never reaches the peak.
    assert [lr(s, total=3, warmup_steps=4) for s in range(3)] == [0.5, 1.0, 1.5]
