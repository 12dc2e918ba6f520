"""Every optimizer preset (config/presets/optim-*.yaml) through the real CLI on the tiny Llama: the loss falls
within 16 steps, and for the optimizers whose state or loop hooks go beyond a step's buffers (Muon's two
halves, SophiaG's Hessian estimates, schedule-free's averaged weights) a run stopped and resumed takes
bitwise the same steps as one that ran straight through (CPU, fp32; losses read from the metric log).

Each job file extends its preset by name, as a user writes it, one of:
    extends: optim-adamw           extends: optim-muon           extends: optim-lion
    extends: optim-came            extends: optim-prodigy        extends: optim-schedule-free-adamw
    extends: optim-adamw8bit       extends: optim-sophia
"""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import ROOT, merge, rows, run_cli, tiny_pretrain_job, write_job

STEPS, HALF = 16, 8
PRESETS = sorted((ROOT / "config" / "presets").glob("optim-*.yaml"))
RESUMED = {"optim-muon", "optim-sophia", "optim-schedule-free-adamw"}


def _losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in rows(run_dir, "train")}  # after a resume the later row wins


def _job(tmp_path, folder: str, preset: str, steps: int, constant: bool) -> dict:
    job = tiny_pretrain_job(tmp_path, output_dir=str(tmp_path / folder), train={"max_steps": steps})
    del job["optim"]  # the preset's optimizer, not the tiny job's AdamW over it
    job = {"extends": preset, **job}
    return merge(job, {"schedule": {"decay": "constant"}}) if constant else job


def test_every_optimizer_has_a_preset():
    from trainhub.job import OPTIM_TYPES

    names = {yaml.safe_load(p.read_text())["optim"]["type"] for p in PRESETS}
    assert names == set(OPTIM_TYPES)


@pytest.mark.slow
@pytest.mark.parametrize("path", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_trains_and_resumes_exactly(tmp_path, path):
    """With a resume, the schedule is made constant after warmup so that extending a finished run (--resume with
    a larger max_steps) replays the straight run's learning rates; the stop at step 8 lands mid-way through
    what the optimizer keeps (momentum, the Hessian estimate of step 10, the averages)."""
    preset = yaml.safe_load(path.read_text())
    resumed = path.stem in RESUMED
    straight = _job(tmp_path, "straight", path.stem, STEPS, resumed)
    done = run_cli("train", "--config", str(write_job(tmp_path / "straight.yaml", straight)))
    assert done.returncode == 0, done.stdout + done.stderr
    losses = _losses(tmp_path / "straight")
    ran = rows(tmp_path / "straight", "start")[0]["job"]["optim"]
    assert {k: ran[k] for k in preset["optim"]} == preset["optim"]  # the preset's optimizer, as written
    assert sum(losses[s] for s in (STEPS - 2, STEPS - 1, STEPS)) / 3 < losses[1] - 0.2, losses  # measured: 0.26 (lion) to 1.3
    if not resumed:
        return

    config = write_job(tmp_path / "resumed.yaml", _job(tmp_path, "resumed", path.stem, HALF, resumed))
    first = run_cli("train", "--config", str(config))
    assert first.returncode == 0, first.stdout + first.stderr
    second = run_cli("train", "--config", str(config), "--resume", "--set", f"train.max_steps={STEPS}")
    assert second.returncode == 0, second.stdout + second.stderr
    assert rows(tmp_path / "resumed", "start")[-1]["step"] == HALF
    assert _losses(tmp_path / "resumed") == losses  # exact float equality, every step
