"""Reading a run folder back and turning it into plots: resumed launches, RL quantities, the job diff."""

from __future__ import annotations

from trainhub.metrics import EndRow, EvalRow, MetricLog, StartRow, TrainRow
from trainhub.metrics.rows import Hardware, MethodStats
from trainhub.report import load, summarize
from trainhub.report.jobdiff import compare, flatten
from trainhub.report.plots import build, labels

HW = Hardware(device="cuda", device_name="H100", device_count=1, peak_flops=989e12, torch="2.8")


def _start(t: float, step: int = 0, resumed: str | None = None, name: str = "rl") -> StartRow:
    return StartRow(run_id=f"r{t}", time=t, step=step, backend="trl", job_hash="h",
                    job={"name": name, "method": {"type": "grpo"}, "optim": {"lr": 1e-5}}, hardware=HW,
                    params_total=10, params_trainable=10, flops_per_token=60.0, precision="bf16", max_steps=4,
                    tokens_per_step=100, resumed_from=resumed)


def _train(t: float, step: int, loss: float, tps: float = 100.0, reward: float | None = 0.5) -> TrainRow:
    method = MethodStats(reward_mean=reward, kl=0.01 * step, clip_ratio=0.1) if reward is not None else None
    return TrainRow(run_id="x", time=t, step=step, loss=loss, lr=1e-5, grad_norm=1.0, tokens=100 * step,
                    tokens_per_s=tps, mfu=0.3, mem_gb=10.0 + step, epoch=0.1 * step, method=method)


def _write(path, rows) -> None:
    log = MetricLog(path / "metrics.jsonl")
    for row in rows:
        log.write(row)
    log.close()


def test_a_resumed_run_counts_each_step_once_and_its_pause_is_not_training_time(tmp_path):
    _write(tmp_path, [
        _start(1000.0), _train(1001.0, 1, 2.0, tps=10.0), _train(1002.0, 2, 1.8), _train(1003.0, 3, 1.7),
        # a crash after the checkpoint at step 2; resumed an hour later
        _start(5000.0, step=2, resumed="ckpt/step-2"), _train(5001.0, 3, 1.6, tps=10.0), _train(5002.0, 4, 1.5),
        EvalRow(run_id="x", time=5002.5, step=4, eval_loss=1.55, perplexity=4.7, eval_tokens=50),
        EndRow(run_id="x", time=5003.0, step=4, status="completed", wall_s=3.0, tokens=400, final_loss=1.5)])
    run = load(tmp_path)
    assert [(r.step, r.loss) for r in run.train()] == [(1, 2.0), (2, 1.8), (3, 1.6), (4, 1.5)]  # the later step 3
    assert run.duration() == 3.0 + 3.0  # two launches of 3 s each, the hour between them left out
    s = summarize(run)
    assert (s.name, s.backend, s.method, s.status, s.step, s.max_steps) == ("rl", "trl", "grpo", "completed", 4, 4)
    assert s.final_loss == 1.5 and s.eval_loss == 1.55 and s.tokens == 400
    assert s.tokens_per_s == 100.0  # each launch's first row (start-up) left out of the median
    assert s.mfu == 0.3 and s.mem_gb == 14.0

    plots = {p.id: p for p in build([run])}
    (train, evals) = plots["loss_step"].series
    assert train.x == [1, 2, 3, 4] and evals.x == [4] and evals.dash
    assert plots["loss_time"].series[0].x == [1.0, 2.0, 4.0, 5.0]
    assert plots["loss_tokens"].series[1].x == [400]
    # the RL quantities each get a plot; the ones never logged do not
    assert {"method_reward_mean", "method_kl", "method_clip_ratio", "mfu"} <= set(plots)
    assert "method_chosen_reward" not in plots and "method_completion_length" not in plots
    assert plots["method_kl"].series[0].y == [0.01, 0.02, 0.03, 0.04]


def test_a_run_without_an_end_row_is_unfinished_and_an_empty_series_is_left_out(tmp_path):
    _write(tmp_path, [_start(1.0, name="sft"), _train(2.0, 1, 3.0, reward=None), _train(3.0, 2, 2.5, reward=None)])
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"schema": 1, "run_id": "x", "ev')  # a row being written right now
    run = load(tmp_path)
    assert run.status == "unfinished" and len(run.rows) == 3 and run.bad_lines == 0
    plots = {p.id: p for p in build([run])}
    assert [s.label for s in plots["loss_step"].series] == ["sft (trl) train"]  # no eval rows, no eval series
    assert not any(pid.startswith("method_") for pid in plots)


def test_labels_tell_runs_of_one_job_apart_by_folder(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        _write(tmp_path / sub, [_start(1.0, name="same")])
    assert labels([load(tmp_path / "a"), load(tmp_path / "b")]) == ["same (trl) a", "same (trl) b"]


def test_job_diff_marks_the_keys_that_differ():
    a = {"name": "a", "optim": {"lr": 0.01, "betas": [0.9, 0.95]}, "log": {}}
    b = {"name": "a", "optim": {"lr": 0.02, "betas": [0.9, 0.95]}, "export": {"merged": True}}
    assert flatten(a) == {"name": "a", "optim.lr": 0.01, "optim.betas": [0.9, 0.95], "log": {}}
    rows = {r.key: (r.values, r.differs) for r in compare([a, b])}
    assert rows["name"] == (["a", "a"], False)
    assert rows["optim.lr"] == (["0.01", "0.02"], True)
    assert rows["optim.betas"] == (["[0.9, 0.95]", "[0.9, 0.95]"], False)
    assert rows["export.merged"] == (["—", "true"], True)
