"""Every optimizer through the real CLI on the tiny Llama: the loss falls, and a run stopped and resumed takes
bitwise the same steps as one that ran straight through (CPU, fp32; losses read from the metric log)."""

from __future__ import annotations

import pytest

from tests.conftest import rows, run_cli, tiny_pretrain_job, write_job

STEPS, HALF = 16, 8
# Learning rates that train the tiny model (hidden 32) within 16 steps; the presets hold the general ones.
OPTIMS = {
    "muon": {"type": "muon", "lr": 1e-2},
}


def _losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in rows(run_dir, "train")}  # after a resume the later row wins


@pytest.mark.slow
@pytest.mark.parametrize("name", list(OPTIMS))
def test_trains_and_resumes_exactly(tmp_path, name):
    """The schedule is constant after warmup so that extending a finished run (--resume with a larger
    max_steps) replays the straight run's learning rates; the stop lands mid-way through everything the
    optimizer keeps (momentum, Hessian estimates, averages)."""
    over = {"optim": OPTIMS[name], "schedule": {"warmup_steps": 2, "decay": "constant"}}
    straight = tiny_pretrain_job(tmp_path, output_dir=str(tmp_path / "straight"), train={"max_steps": STEPS}, **over)
    done = run_cli("train", "--config", str(write_job(tmp_path / "straight.yaml", straight)))
    assert done.returncode == 0, done.stdout + done.stderr
    losses = _losses(tmp_path / "straight")
    assert sum(losses[s] for s in (STEPS - 2, STEPS - 1, STEPS)) / 3 < losses[1] - 0.3, losses

    half = tiny_pretrain_job(tmp_path, output_dir=str(tmp_path / "resumed"), train={"max_steps": HALF}, **over)
    config = write_job(tmp_path / "resumed.yaml", half)
    first = run_cli("train", "--config", str(config))
    assert first.returncode == 0, first.stdout + first.stderr
    second = run_cli("train", "--config", str(config), "--resume", "--set", f"train.max_steps={STEPS}")
    assert second.returncode == 0, second.stdout + second.stderr
    assert rows(tmp_path / "resumed", "start")[-1]["step"] == HALF
    assert _losses(tmp_path / "resumed") == losses  # exact float equality, every step
