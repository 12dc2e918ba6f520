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


def test_the_span_share_leaves_out_the_windows_lead_in():
    """Kernels at 10-30 and 40-90 us of a 100 us window: busy 70 us; 70% of the window, 87.5% of the 80 us from
    the first kernel's start to the last one's end (the 10 us before the first kernel are the window's own
    synchronized start; the 10 us gap between the kernels count in both)."""
    import torch

    from trainhub.engine.profile import summarize

    class Event:
        def __init__(self, a, b):
            self.time_range = type("R", (), {"start": a, "end": b})()
            self.device_type = torch.autograd.DeviceType.CUDA

    class Prof:
        def events(self):
            return [Event(40, 90), Event(10, 30)]

        def key_averages(self):
            return []

    s = summarize(Prof(), wall=100e-6, steps=1, device=torch.device("cuda"))
    assert s["gpu_busy_s"] == pytest.approx(70e-6) and s["gpu_span_s"] == pytest.approx(80e-6)
    assert s["gpu_busy_share"] == pytest.approx(0.70) and s["gpu_busy_share_span"] == pytest.approx(0.875)
    cpu = summarize(type("P", (), {"events": lambda self: [], "key_averages": lambda self: []})(), 1.0, 1,
                    torch.device("cpu"))
    assert cpu["gpu_busy_share"] is None and cpu["gpu_busy_share_span"] is None


def test_a_window_past_the_last_step_is_refused(tmp_path):
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 4, "profile": {"start": 5}})
    with pytest.raises(ValueError, match="train.profile.start 5 is past train.max_steps 4"):
        Job.model_validate(job)


def test_other_backends_refuse_it_by_name(tmp_path):
    job = Job.model_validate(tiny_pretrain_job(tmp_path, train={"profile": {"start": 1}}))
    assert [p.where for p in native_only_problems(job, "trl")] == ["train.profile"]


def _frame(path: str, line: int, name: str) -> dict:
    return {"filename": path, "line": line, "name": name}


def test_peak_blocks_names_what_is_alive_at_the_peak():
    """A hand-built allocator trace: 100 bytes from before the window, of which 40 are freed; activations of
    30 + 50 bytes, a 70-byte temporary that makes the peak (100 + 30 + 50 + 70 = 250), freed before a later
    20-byte block. At the peak: before 100, forward 80 (two blocks), the temporary 70."""
    from trainhub.engine.profile import BEFORE, peak_blocks

    fwd = [_frame("/x/torch/nn/modules/linear.py", 125, "forward"),
           _frame("/site/trainhub/engine/models/transformer.py", 90, "forward")]
    tmp = [_frame("/site/trainhub/engine/rl/logprobs.py", 58, "backward")]
    late = [_frame("/usr/lib/python3/thing.py", 3, "f")]
    events = [{"action": "alloc", "addr": 1, "size": 30, "frames": fwd},
              {"action": "alloc", "addr": 2, "size": 50, "frames": fwd},
              {"action": "segment_alloc", "addr": 99, "size": 4096},  # not a block: ignored
              {"action": "alloc", "addr": 3, "size": 70, "frames": tmp},
              {"action": "free_requested", "addr": 3, "size": 70},
              {"action": "free_completed", "addr": 3, "size": 70},
              {"action": "free_completed", "addr": 500, "size": 40},  # a block from before the window
              {"action": "alloc", "addr": 4, "size": 20, "frames": late}]
    out = peak_blocks(events, base=100)
    assert out["peak_gb"] == 250 / 1e9 and out["base_gb"] == 100 / 1e9
    assert [(r["where"], r["gb"] * 1e9, r["blocks"]) for r in out["at_peak"]] == [
        (BEFORE, 100, 0), ("engine/models/transformer.py:90 forward", 80, 2), ("engine/rl/logprobs.py:58 backward", 70, 1)]


def test_peak_blocks_counts_frees_from_before_the_window_against_that_line():
    from trainhub.engine.profile import BEFORE, peak_blocks

    events = [{"action": "free_completed", "addr": 7, "size": 60},
              {"action": "alloc", "addr": 1, "size": 90, "frames": []}]
    out = peak_blocks(events, base=100)
    assert out["peak_gb"] == 130 / 1e9
    assert {r["where"]: r["gb"] * 1e9 for r in out["at_peak"]} == {BEFORE: 40, "?": 90}
