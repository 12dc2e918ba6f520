"""train.profile (engine/profile.py): the busy-time union, the window's files, refusals elsewhere."""

from __future__ import annotations

import pytest

from tests.conftest import tiny_pretrain_job
from trainhub.engine.profile import busy_seconds
from trainhub.job import Job
from trainhub.runners.base import native_only_problems


def test_busy_time_is_the_union_of_kernel_intervals():
    assert busy_seconds([]) == 0
    assert busy_seconds([(0, 2), (1, 3)]) == 3  # overlap counted once
    assert busy_seconds([(5, 6), (0, 1), (0.5, 0.7)]) == 2  # unsorted, nested
    assert busy_seconds([(0, 1), (2, 3)]) == 2  # the gap is idle


def test_a_window_past_the_last_step_is_refused(tmp_path):
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 4, "profile": {"start": 5}})
    with pytest.raises(ValueError, match="train.profile.start 5 is past train.max_steps 4"):
        Job.model_validate(job)


def test_other_backends_refuse_it_by_name(tmp_path):
    job = Job.model_validate(tiny_pretrain_job(tmp_path, train={"profile": {"start": 1}}))
    assert [p.where for p in native_only_problems(job, "trl")] == ["train.profile"]
