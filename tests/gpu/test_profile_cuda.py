"""train.profile.memory on a CUDA GPU: the allocator's history over the window, and the block alive at its peak
named by the line that allocated it. Skipped without CUDA."""

from __future__ import annotations

import json

import pytest
import torch

from trainhub.engine.profile import BEFORE, StepProfiler
from trainhub.job import ProfileSection

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_memory_window_names_the_peak_block(tmp_path):
    device = torch.device("cuda")
    kept = torch.empty(64 * 2**20, dtype=torch.uint8, device=device)  # 64 MiB from before the window
    notes: list[str] = []
    profiler = StepProfiler(ProfileSection(start=1, steps=1, memory=True), tmp_path, device, True, first=1, last=1,
                            notes=notes)
    profiler.before(1)
    big = torch.empty(256 * 2**20, dtype=torch.uint8, device=device)  # the peak: 256 MiB on top
    del big
    small = torch.empty(2**20, dtype=torch.uint8, device=device)
    profiler.after(1)
    summary = json.loads((tmp_path / "profile" / "summary.json").read_text())["memory"]
    assert not notes and (tmp_path / "profile" / "memory.pickle").is_file()
    assert summary["peak_gb"] == pytest.approx(summary["base_gb"] + 256 * 2**20 / 1e9, rel=1e-3)
    top = summary["at_peak"][0]
    assert top["gb"] == pytest.approx(256 * 2**20 / 1e9, rel=1e-3) and "test_profile_cuda.py" in top["where"]
    assert any(r["where"] == BEFORE and r["gb"] >= 64 * 2**20 / 1e9 for r in summary["at_peak"])
    del kept, small
