"""The sinks through the hub, fed by a scripted child that writes metric rows and waits to be told to
finish: a scrape of the Prometheus endpoint while the run lives, and failing sinks that are warning rows,
never a failed run. The fan-out itself with sinks of the test's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, rows, tiny_pretrain_job
from trainhub.metrics import EndRow, EvalRow, StartRow, TrainRow, read_rows
from trainhub.metrics.rows import Hardware, MethodStats
from trainhub.sinks import scalars
from trainhub.sinks.fanout import Sinks

CHILD = """
import os, sys, time
from pathlib import Path
from trainhub.metrics import EndRow, EvalRow, MetricLog, StartRow, TrainRow
from trainhub.metrics.rows import Hardware
from trainhub.job import Job

run_dir = Path(sys.argv[1])
run_id, job = os.environ["TRAINHUB_RUN_ID"], Job.model_validate_json((run_dir / "job.json").read_text())
log = MetricLog(run_dir / "metrics.jsonl")
hw = Hardware(device="cpu", device_name="scripted", device_count=1, peak_flops=1e12, torch="none")
t0 = time.time()
log.write(StartRow(run_id=run_id, step=0, backend="scripted", job_hash=job.hash(), job=job.model_dump(mode="json"),
                   hardware=hw, params_total=100, params_trainable=100, flops_per_token=600.0, precision="fp32",
                   max_steps=4, tokens_per_step=64))
for step in (1, 2, 3):
    log.write(TrainRow(run_id=run_id, step=step, time=t0 + step, loss=4.0 - step / 2, lr=1e-3 * step, grad_norm=1.0,
                       tokens=64 * step, tokens_per_s=640.0 + step, mfu=0.25, mem_gb=1.5, epoch=step / 10))
log.write(EvalRow(run_id=run_id, step=3, eval_loss=2.75, perplexity=15.6, eval_tokens=32))
go, deadline = run_dir / "go", time.time() + 120
while not go.exists() and time.time() < deadline:
    time.sleep(0.05)
log.write(TrainRow(run_id=run_id, step=4, loss=2.0, lr=4e-3, grad_norm=1.0, tokens=256, tokens_per_s=700.0,
                   mfu=0.25, mem_gb=1.5, epoch=0.4))
log.write(EndRow(run_id=run_id, step=4, status="completed", wall_s=time.time() - t0, tokens=256, final_loss=2.0,
                 exit_code=0))
"""

DRIVER = """
import json, sys
from pathlib import Path
from trainhub.hub import run
from trainhub.job import Job
from trainhub.progress import View
from trainhub.runners.base import Launch

class Scripted:
    name = "scripted"
    def prepare(self, job, run_dir, dry_run=False, resume=None):
        return Launch(argv=[sys.executable, "-c", sys.argv[2], str(run_dir)], cwd=run_dir)

sys.exit(run(Job.model_validate(json.loads(sys.argv[1])), Scripted(), view=View("plain")))
"""


def _hub(job: dict, env: dict | None = None) -> subprocess.Popen:
    """The hub's run() in a process of its own (its signal handling wants a main thread; wandb its own state)."""
    return subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(job), CHILD], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scrape(port: int) -> dict[str, list]:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_prometheus_serves_the_gauges_while_the_run_lives(tmp_path):
    pytest.importorskip("prometheus_client")
    port = _free_port()
    job = tiny_pretrain_job(tmp_path, name="scraped", log={"console": "plain", "prometheus": {"port": port}})
    hub = _hub(job)
    deadline, seen = time.time() + 120, None
    while time.time() < deadline and hub.poll() is None:
        try:
            seen = _scrape(port)
            if seen["trainhub_step"][0].value == 3 and seen["trainhub_eval_loss"][0].value == 2.75:
                break
        except (OSError, KeyError, IndexError):
            pass
        time.sleep(0.1)
    (Path(job["output_dir"]) / "go").touch()
    out, _ = hub.communicate(timeout=120)
    assert hub.returncode == 0, out
    assert seen is not None, out
    value = {name: samples[0].value for name, samples in seen.items() if samples}
    labels = seen["trainhub_loss"][0].labels
    assert labels == {"run": "scraped", "backend": "scripted"}
    assert value["trainhub_step"] == 3 and value["trainhub_max_steps"] == 4
    assert value["trainhub_loss"] == 2.5 and value["trainhub_learning_rate"] == pytest.approx(3e-3)
    assert value["trainhub_tokens"] == 192 and value["trainhub_tokens_per_second"] == 643.0
    assert value["trainhub_mfu"] == 0.25 and value["trainhub_memory_bytes"] == 1.5e9
    assert value["trainhub_eta_seconds"] == pytest.approx(1.0)  # 1 step left at 1 s a step (rows' own times)
    status = {s.labels["trainhub_status"]: s.value for s in seen["trainhub_status"]}
    assert status["running"] == 1 and status["completed"] == 0
    assert f"prometheus: http://127.0.0.1:{port}/metrics" in out
    with pytest.raises(OSError):  # the endpoint lives only as long as the run
        _scrape(port)
    assert rows(Path(job["output_dir"]), "warning") == []


def test_failing_sinks_are_warning_rows_and_the_run_completes(tmp_path):
    pytest.importorskip("wandb")
    pytest.importorskip("tensorboard")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "tensorboard").write_text("a file where the event folder would go\n")
    job = tiny_pretrain_job(tmp_path, log={"console": "plain", "wandb": {"mode": "online"}, "tensorboard": True})
    # no W&B credentials anywhere: online W&B cannot start (and must not prompt)
    home = tmp_path / "home"
    env = {"HOME": str(home), "WANDB_CONFIG_DIR": str(home / ".config"), "NETRC": str(home / "none"),
           "WANDB_API_KEY": "", "WANDB_DIR": str(tmp_path)}
    (run_dir / "go").touch()
    hub = _hub(job, env)
    out, _ = hub.communicate(timeout=300)
    assert hub.returncode == 0, out
    all_rows = read_rows(run_dir / "metrics.jsonl")  # the hub's rows are valid rows of the schema
    assert [r.event for r in all_rows if r.event != "warning"] == ["start", "train", "train", "train", "eval",
                                                                   "train", "end"]
    assert [r.status for r in all_rows if r.event == "end"] == ["completed"]
    warnings = {r.source: r.message for r in all_rows if r.event == "warning"}
    assert set(warnings) == {"wandb", "tensorboard"}
    assert warnings["wandb"].startswith("wandb failed to start: no W&B API key")
    assert warnings["tensorboard"].startswith("tensorboard failed to start")
    for message in warnings.values():
        assert message.endswith("training goes on without it") and f"warning: {message}" in out
        assert out.count(message) == 1  # once


# ----------------------------------------------------------------------------- the fan-out

HW = Hardware(device="cpu", device_name="cpu", device_count=1, peak_flops=None, torch="none")


def _start(run_id: str = "r1", step: int = 0, resumed: str | None = None) -> StartRow:
    return StartRow(run_id=run_id, step=step, backend="native", job_hash="h", job={"name": "t"}, hardware=HW,
                    params_total=1, params_trainable=1, flops_per_token=6.0, precision="fp32", max_steps=4,
                    tokens_per_step=8, resumed_from=resumed)


def _train(step: int, run_id: str = "r1") -> TrainRow:
    return TrainRow(run_id=run_id, step=step, loss=1.0, lr=0.1, grad_norm=None, tokens=8 * step, tokens_per_s=8.0,
                    mfu=None, mem_gb=None, epoch=0.0)


class Recorder:
    def __init__(self, name: str = "recorder", fail_on: str | None = None):
        self.name, self.fail_on, self.calls = name, fail_on, []

    def open(self, start, run_dir, resumed):
        self._record("open", start.step, resumed)

    def write(self, row):
        self._record("write", row.event, row.step)

    def close(self, end):
        self._record("close", end and end.status)

    def _record(self, *call):
        self.calls.append(call)
        if call[0] == self.fail_on:
            raise RuntimeError(f"{self.name} broke\n  on {call[0]}")


def test_fanout_feeds_one_launch_and_drops_a_failing_sink_with_one_warning_row(tmp_path):
    good, bad, said = Recorder("good"), Recorder("bad", fail_on="write"), []
    sinks = Sinks([good, bad], tmp_path, "r2", say=said.append)
    earlier = [_start("r1"), _train(1, "r1"), EndRow(run_id="r1", step=1, status="interrupted", wall_s=1.0, tokens=8,
                                                     final_loss=1.0)]
    for row in [*earlier, _train(2, "r2"), _start("r2", 1, resumed="ckpt"), _train(2, "r2"), _train(3, "r2"),
                EvalRow(run_id="r2", step=3, eval_loss=1.0, perplexity=2.7, eval_tokens=4),
                EndRow(run_id="r2", step=3, status="completed", wall_s=1.0, tokens=24, final_loss=1.0)]:
        sinks.write(row)
    sinks.close(timeout=30)
    # only this launch's rows, from its start row on
    assert good.calls == [("open", 1, True), ("write", "train", 2), ("write", "train", 3), ("write", "eval", 3),
                          ("close", "completed")]
    assert bad.calls == [("open", 1, True), ("write", "train", 2), ("close", None)]
    assert said == ["warning: bad failed: bad broke on write; training goes on without it"]
    (warning,) = read_rows(tmp_path / "metrics.jsonl")
    assert (warning.event, warning.run_id, warning.step, warning.source) == ("warning", "r2", 2, "bad")


def test_fanout_closes_a_launch_that_ended_without_an_end_row(tmp_path):
    sink = Recorder()
    with Sinks([sink], tmp_path, "r1", say=lambda _: None) as sinks:
        sinks.write(_start())
        sinks.write(_train(1))
    assert sink.calls == [("open", 0, False), ("write", "train", 1), ("close", None)]


def test_scalars_name_every_number_and_leave_nulls_out():
    row = TrainRow(run_id="r", step=2, loss=None, lr=0.1, grad_norm=None, tokens=16, tokens_per_s=8.0, mfu=0.5,
                   mem_gb=None, epoch=0.5, nonfinite_skipped=1,
                   method=MethodStats(reward_mean=0.75, kl=0.01, rewards={"format": 1.0}))
    assert scalars(row) == {"train/lr": 0.1, "train/tokens": 16.0, "train/tokens_per_s": 8.0, "train/mfu": 0.5,
                            "train/epoch": 0.5, "train/nonfinite_skipped": 1.0, "train/reward_mean": 0.75,
                            "train/kl": 0.01, "train/rewards/format": 1.0}
    ev = EvalRow(run_id="r", step=2, eval_loss=1.5, perplexity=4.5, eval_tokens=10)
    assert scalars(ev) == {"eval/loss": 1.5, "eval/perplexity": 4.5, "eval/tokens": 10.0}
    assert scalars(_start()) == {}


def test_log_section_names_the_sinks():
    from pydantic import ValidationError

    from trainhub.job import LogSection
    from trainhub.sinks import build_sinks

    log = LogSection.model_validate({"wandb": True, "tensorboard": True, "prometheus": {"port": 9464}})
    assert log.wandb.project == "trainhub" and log.wandb.mode == "online" and log.wandb.tags == []
    assert log.prometheus.host == "127.0.0.1"
    assert [s.name for s in build_sinks(log)] == ["wandb", "tensorboard", "prometheus"]
    assert build_sinks(LogSection()) == []
    for bad in ({"wandb": {"mode": "cloud"}}, {"prometheus": {"port": 0}}, {"prometheus": {}},
                {"wandb": {"projet": "p"}}):
        with pytest.raises(ValidationError):
            LogSection.model_validate(bad)
