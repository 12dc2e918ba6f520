"""engine/losswatch.py's verdicts on hand-worked loss sequences, and the refusal outside native pretrain/SFT."""

from __future__ import annotations

import math

import pytest

from tests.conftest import tiny_pretrain_job
from trainhub.engine.losswatch import Watch
from trainhub.job import Job, LossWatch
from trainhub.runners.base import native_only_problems


def _verdicts(losses, **spec) -> dict[int, str]:
    watch = Watch(LossWatch(**spec))
    return {step: v for step, loss in enumerate(losses, 1) if (v := watch.check(step, loss))}


def test_a_jump_held_for_patience_rows_is_said_once_per_excursion():
    # window [1.0, 1.1, 0.9, 1.0, 1.05]: median 1.0, deviations' median 0.05, spread 1.4826 x 0.05 = 0.0741,
    # threshold 1 + 3 x 0.0741 = 1.222: 1.2 is normal and joins the window ([1.1, 0.9, 1.0, 1.05, 1.2]: median
    # 1.05, spread 0.0741 again, threshold 1.272); 1.5 and 1.6 are high, the second says it ((1.6 - 1.05) / 0.0741
    # = 7.4 spreads); 1.7 is still high but already said; 1.0 ends it; then two high rows say it again.
    got = _verdicts([1.0, 1.1, 0.9, 1.0, 1.05, 1.2, 1.5, 1.6, 1.7, 1.0, 1.5, 1.5], window=5, sigma=3, patience=2)
    assert sorted(got) == [8, 12]
    assert got[8].startswith("loss diverging: 1.6 at step 8 is 7.4 spreads above the median 1.05 of the last 5 rows, "
                             "2 rows in a row")


def test_a_falling_or_flat_curve_never_trips_it():
    assert not _verdicts([5 - 0.01 * i for i in range(300)], window=20, sigma=3, patience=1)
    # identical losses: the spread is floored at 1% of the baseline, so 2.1 (5 spreads of 0.02 above 2.0) is normal
    assert not _verdicts([2.0] * 10 + [2.1] * 5, window=10, sigma=6, patience=1)
    assert _verdicts([2.0] * 10 + [2.2], window=10, sigma=6, patience=1)


def test_high_rows_stay_out_of_the_baseline_and_non_finite_losses_are_not_its_business():
    # after the window fills, the high rows are not appended: a long excursion is measured against the old median
    got = _verdicts([1.0] * 5 + [3.0] * 10 + [math.nan, None] + [1.0] + [3.0] * 2, window=5, sigma=6, patience=2)
    assert sorted(got) == [7, 20]
    assert "median 1 of the last 5 rows" in got[20]


def test_other_backends_refuse_it_by_name(tmp_path):
    job = Job.model_validate(tiny_pretrain_job(tmp_path, train={"loss_watch": {}}))
    assert [p.where for p in native_only_problems(job, "trl")] == ["train.loss_watch"]


def test_window_must_hold_a_few_rows(tmp_path):
    with pytest.raises(ValueError, match="window"):
        Job.model_validate(tiny_pretrain_job(tmp_path, train={"loss_watch": {"window": 2}}))


def test_plan_says_the_watch(tmp_path):
    from trainhub.runners.native.runner import NativeRunner

    job = Job.model_validate(tiny_pretrain_job(tmp_path, train={"loss_watch": {"action": "stop", "window": 20}}))
    assert "  loss watch: stop when 3 rows in a row sit over 6 spreads above the median of the last 20 " \
           "(engine/losswatch.py)" in NativeRunner().plan_lines(job)
    assert not any("loss watch" in line for line in NativeRunner().plan_lines(Job.model_validate(tiny_pretrain_job(tmp_path))))
