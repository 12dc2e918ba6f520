"""Sinks on a real run: W&B (offline) and TensorBoard read back through their own readers, a resume
that logs steps again without a step twice in either, and a taken Prometheus port that is a warning row,
not a failed run."""

from __future__ import annotations

import math
import socket

import pytest

from tests.conftest import rows, run_cli, tiny_pretrain_job, write_job
from tests.sinks_readers import tensorboard_scalars, wandb_runs

pytest.importorskip("wandb")
pytest.importorskip("tensorboard")
pytest.importorskip("prometheus_client")


def _by_step(train_rows: list[dict]) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in train_rows}


def test_wandb_and_tensorboard_record_a_run_and_its_resume_once_per_step(tmp_path):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    run_dir = tmp_path / "run"
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 6, "save_every": 3, "keep_last": 3, "eval_every": 3,
                                             "eval_batches": 1},
                            log={"console": "plain", "wandb": {"mode": "offline", "project": "trainhub-tests",
                                                               "tags": ["tiny"]},
                                 "tensorboard": True, "prometheus": {"port": port}})
    config = write_job(tmp_path / "job.yaml", job)
    with taken:
        first = run_cli("train", "--config", str(config))
        assert first.returncode == 0, first.stdout + first.stderr
        # the port in use is a warning (console and metric log), and the run completed regardless
        (warning,) = rows(run_dir, "warning")
        assert warning["source"] == "prometheus" and "failed to start" in warning["message"]
        assert "address already in use" in warning["message"].lower()
        assert f"warning: {warning['message']}" in first.stdout
        assert rows(run_dir, "end")[-1]["status"] == "completed"
        launch1 = _by_step(rows(run_dir, "train"))

        # resume from the checkpoint at step 3, on to step 10: steps 4-6 are trained and logged again,
        # as after a crash past the last checkpoint
        second = run_cli("train", "--config", str(config), "--resume", str(run_dir / "checkpoints" / "step-00000003"),
                         "--set", "train.max_steps=10")
        assert second.returncode == 0, second.stdout + second.stderr
    train = rows(run_dir, "train")
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6, 4, 5, 6, 7, 8, 9, 10]
    launch2 = _by_step(train[6:])
    evals = rows(run_dir, "eval")
    assert [r["step"] for r in evals] == [3, 6, 6, 9, 10]

    # W&B: one run id in two offline folders; every step once; the earlier launch's steps 4-6 kept (W&B
    # drops a step lower than its last); the values are the metric log's; the end in the summary
    wb = wandb_runs(run_dir)
    # once (fresh clone, 2 busy cores) only one folder was found; if it happens again, say what was there
    assert len(wb) == 2, (sorted(p.name for p in (run_dir / "wandb").iterdir()),
                          rows(run_dir, "warning"), second.stdout[-2000:])
    first_wb, second_wb = wb
    assert first_wb["id"] == second_wb["id"]
    assert first_wb["run"]["display_name"] == "tiny-pretrain" and first_wb["run"]["project"] == "trainhub-tests"
    steps = [h["_step"] for h in first_wb["history"] + second_wb["history"]]
    assert steps == list(range(1, 11))
    history = {h["_step"]: h for h in first_wb["history"] + second_wb["history"]}
    expected = {**launch1, **{s: v for s, v in launch2.items() if s > 6}}
    assert {s: h["train/loss"] for s, h in history.items()} == pytest.approx(expected)
    assert {s for s, h in history.items() if "eval/loss" in h} == {3, 6, 9, 10}
    assert history[3]["eval/loss"] == pytest.approx(evals[0]["eval_loss"])
    assert history[10]["eval/loss"] == pytest.approx(evals[-1]["eval_loss"])
    assert history[7]["_timestamp"] == pytest.approx(train[9]["time"])  # the row's own time
    assert second_wb["summary"]["status"] == "completed"
    assert second_wb["summary"]["final_loss"] == pytest.approx(rows(run_dir, "end")[-1]["final_loss"])

    # TensorBoard: its reader purges the earlier launch's steps after the checkpoint; the later rows count
    tb = tensorboard_scalars(run_dir)
    loss = tb["train/loss"]
    assert [s for s, _ in loss] == list(range(1, 11))
    assert dict(loss) == pytest.approx({**{s: launch1[s] for s in (1, 2, 3)}, **launch2}, rel=1e-6)
    assert [s for s, _ in tb["eval/loss"]] == [3, 6, 9, 10]
    assert dict(tb["eval/loss"])[6] == pytest.approx(evals[2]["eval_loss"], rel=1e-6)  # the resumed launch's
    assert {"train/lr", "train/tokens", "train/tokens_per_s", "train/mem_gb", "eval/perplexity"} <= set(tb)
    assert "train/mfu" not in tb  # null on CPU: left out, never a fake zero
    assert all(math.isfinite(v) for _, v in tb["train/lr"])
