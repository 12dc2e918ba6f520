"""`train` with train.profile on the native engine: the trace and summary of the chosen steps in the run folder."""

from __future__ import annotations

import json

from tests.conftest import rows, run_cli, tiny_pretrain_job, write_job


def test_profile_writes_the_window_trace_and_summary(tmp_path):
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 5, "profile": {"start": 2, "steps": 2}})
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)))
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "run"
    summary = json.loads((run / "profile" / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["wall_s"] > 0 and summary["gpu_busy_share"] is None  # CPU
    assert summary["top_ops"] and all(op["calls"] >= 1 for op in summary["top_ops"])
    trace = json.loads((run / "profile" / "trace.json").read_text())
    assert any(e.get("name", "").startswith("aten::") for e in trace["traceEvents"])
    assert "profile: steps 2-3" in done.stdout
    assert [r["step"] for r in rows(run, "train")] == [1, 2, 3, 4, 5]  # the run itself is untouched


def test_a_run_ending_inside_the_window_closes_it(tmp_path):
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 3, "profile": {"start": 3, "steps": 5}})
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "run" / "profile" / "summary.json").read_text())["steps"] == 1


def test_a_window_the_run_never_reaches_is_said(tmp_path):
    """epochs decide the steps at run time: a start past them is a note in the start row, and no profile."""
    job = tiny_pretrain_job(tmp_path, train={"epochs": 0.05, "max_steps": None, "profile": {"start": 500}})
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)))
    assert done.returncode == 0, done.stdout + done.stderr
    notes = rows(tmp_path / "run", "start")[0]["notes"]
    assert any("train.profile: step 500 is outside this run's steps 1-" in n for n in notes)
    assert not (tmp_path / "run" / "profile").exists()
