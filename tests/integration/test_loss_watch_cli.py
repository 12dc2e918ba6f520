"""`train` with train.loss_watch on the native engine: a real divergence (the data turns from stories to random
characters mid-run, unshuffled, so the loss jumps from ~4.3 to ~9) is warned about once, or stops the run."""

from __future__ import annotations

import json
import random

from tests.conftest import DATA, rows, run_cli, tiny_pretrain_job, write_job


def _job(tmp_path, action: str) -> dict:
    stories = (DATA / "stories.jsonl").read_text().splitlines()[:40]
    rng = random.Random(0)
    noise = [json.dumps({"text": "".join(rng.choice("qxzjvkw#%&@!0123456789") for _ in range(300))})
             for _ in range(80)]
    (tmp_path / "data.jsonl").write_text("\n".join(stories + noise) + "\n")
    return tiny_pretrain_job(tmp_path, data={"train": str(tmp_path / "data.jsonl"), "shuffle": False},
                             train={"max_steps": 34, "save_every": 10,
                                    "loss_watch": {"window": 10, "sigma": 6, "patience": 3, "action": action}})


def test_a_diverging_loss_is_warned_about_once_and_training_goes_on(tmp_path):
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", _job(tmp_path, "warn"))))
    assert done.returncode == 0, done.stdout + done.stderr
    warnings = rows(tmp_path / "run", "warning")
    assert len(warnings) == 1 and warnings[0]["source"] == "loss_watch"
    assert warnings[0]["message"].startswith("loss diverging: ") and "3 rows in a row" in warnings[0]["message"]
    losses = {r["step"]: r["loss"] for r in rows(tmp_path / "run", "train")}
    spike = warnings[0]["step"]
    assert losses[spike] > 1.5 * losses[spike - 5]  # the watch fired on the jump, not on noise
    assert rows(tmp_path / "run", "end")[0]["status"] == "completed"
    assert "warning: loss diverging" in done.stdout


def test_action_stop_ends_the_run_keeping_the_last_checkpoint(tmp_path):
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", _job(tmp_path, "stop"))))
    assert done.returncode == 1
    error = rows(tmp_path / "run", "error")[0]
    assert error["message"].startswith("loss diverging: ") and "the last checkpoint is kept" in error["message"]
    assert not rows(tmp_path / "run", "warning")
    assert (tmp_path / "run" / "checkpoints" / "step-00000020").is_dir()  # the last save before the jump
    assert max(r["step"] for r in rows(tmp_path / "run", "train")) == error["step"] < 34
