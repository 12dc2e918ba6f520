"""The metric log: every row type written and read back, the JSON it is stored as, and the docs it documents."""

from __future__ import annotations

import importlib.util
import json
import math
import re

import pytest
from pydantic import ValidationError

from tests.conftest import ROOT
from trainhub.metrics import (
    SCHEMA_VERSION,
    CheckpointRow,
    EndRow,
    ErrorRow,
    EvalRow,
    MetricLog,
    StartRow,
    TrainRow,
    WarningRow,
    read_rows,
)
from trainhub.metrics.rows import Hardware

HARDWARE = Hardware(device="cuda", device_name="NVIDIA H100 80GB HBM3", device_count=1, peak_flops=989e12,
                    torch="2.8.0")

ROWS = [
    StartRow(run_id="r1", step=0, time=1000.5, backend="native", job_hash="0123456789abcdef",
             job={"name": "t", "seed": 0}, hardware=HARDWARE, params_total=7056, params_trainable=2240,
             flops_per_token=53088.0, precision="fp32", max_steps=3, tokens_per_step=256,
             notes=["CPU: fp32 instead of bf16"], data={"blocks": 40, "tail_tokens_dropped": 7}),
    TrainRow(run_id="r1", step=1, time=1001.25, loss=5.5, lr=1e-3, grad_norm=0.75, tokens=256,
             tokens_per_s=1024.0, mfu=None, mem_gb=0.5, epoch=0.125),
    TrainRow(run_id="r1", step=2, time=1002.0, loss=4.25, lr=2e-3, grad_norm=None, tokens=512,
             tokens_per_s=2048.0, mfu=0.375, mem_gb=None, epoch=0.25),
    EvalRow(run_id="r1", step=2, time=1002.5, eval_loss=2.0, perplexity=math.exp(2.0), eval_tokens=124),
    CheckpointRow(run_id="r1", step=2, time=1003.0, path="/runs/t/checkpoints/step-00000002"),
    WarningRow(run_id="r1", step=2, time=1003.25, source="wandb", message="wandb failed: offline"),
    ErrorRow(run_id="r1", step=2, time=1003.5, message="out of memory", detail="Traceback ..."),
    EndRow(run_id="r1", step=3, time=1004.0, status="failed", wall_s=4.0, tokens=768, final_loss=4.0,
           exit_code=1),
]


def write_log(path, rows):
    log = MetricLog(path)
    for row in rows:
        log.write(row)
    log.close()


def test_every_row_type_round_trips(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_log(path, ROWS)
    back = read_rows(path)
    assert [type(r) for r in back] == [type(r) for r in ROWS]
    assert back == ROWS


def test_rows_are_readable_at_once_and_durable_rows_are_fsynced(tmp_path, monkeypatch):
    """Every row is flushed as it is written (a follower, or a killed process, loses none); start,
    checkpoint, error and end rows are fsynced at once, train and eval rows at most every FSYNC_EVERY_S."""
    import trainhub.metrics.log as log_mod

    synced = []
    monkeypatch.setattr(log_mod.os, "fsync", lambda fd: synced.append(fd))
    clock = [100.0]
    monkeypatch.setattr(log_mod.time, "monotonic", lambda: clock[0])
    path = tmp_path / "metrics.jsonl"
    log = MetricLog(path)
    events = []
    for row in ROWS[:5]:  # start, train, train, eval, checkpoint
        log.write(row)
        events.append(row.event)
        assert [r.event for r in read_rows(path)] == events  # on disk (to readers) before close
    assert len(synced) == 2  # start and checkpoint only
    clock[0] += log_mod.FSYNC_EVERY_S
    log.write(ROWS[1])  # a train row after the interval: fsynced
    assert len(synced) == 3
    log.write(ROWS[-1])  # end
    log.close()
    assert len(synced) == 5  # end, then close


def test_appending_keeps_earlier_rows(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_log(path, ROWS[:2])
    write_log(path, ROWS[2:])
    assert read_rows(path) == ROWS


def test_json_key_is_schema_with_the_version(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_log(path, ROWS)
    lines = path.read_text().splitlines()
    assert len(lines) == len(ROWS)
    for line in lines:
        record = json.loads(line)
        assert record["schema"] == SCHEMA_VERSION
        assert "schema_version" not in record
    assert SCHEMA_VERSION == 1


def test_train_row_json_is_exactly_these_fields(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_log(path, [ROWS[1]])
    assert json.loads(path.read_text()) == {
        "schema": 1, "time": 1001.25, "run_id": "r1", "step": 1, "event": "train", "loss": 5.5, "lr": 1e-3,
        "grad_norm": 0.75, "tokens": 256, "tokens_per_s": 1024.0, "mfu": None, "mem_gb": 0.5, "epoch": 0.125,
        "nonfinite_skipped": 0,
    }


def test_method_stats_are_written_only_when_present(tmp_path):
    from trainhub.metrics.rows import MethodStats

    path = tmp_path / "metrics.jsonl"
    write_log(path, [ROWS[1].model_copy(update={"method": MethodStats(reward_mean=0.5, rewards={"f": 0.5})})])
    row = json.loads(path.read_text())
    assert row["method"]["reward_mean"] == 0.5 and row["method"]["rewards"] == {"f": 0.5}
    assert read_rows(path)[0].method.reward_mean == 0.5


def test_read_rows_names_file_and_line_of_a_malformed_row(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_log(path, ROWS[:2])
    with open(path, "a") as f:
        f.write("\n")  # a blank line still counts as a line
        f.write('{"schema": 1, "run_id": "r1", "step": 3, "event": "train"\n')  # truncated JSON
    with pytest.raises(ValueError, match=rf"(?s)^{re.escape(str(path))}:4: not a metric row"):
        read_rows(path)


def test_read_rows_names_the_line_of_a_row_that_breaks_the_schema(tmp_path):
    path = tmp_path / "metrics.jsonl"
    write_log(path, ROWS[:1])
    record = json.loads(ROWS[1].model_dump_json(by_alias=True))
    del record["loss"]
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=rf"(?s)^{re.escape(str(path))}:2: not a metric row.*loss"):
        read_rows(path)


def test_unknown_event_is_refused(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({"schema": 1, "time": 1.0, "run_id": "r", "step": 0, "event": "progress"}) + "\n")
    with pytest.raises(ValueError, match=rf"(?s)^{re.escape(str(path))}:1: "):
        read_rows(path)


def test_rows_reject_unknown_fields(tmp_path):
    fields = ROWS[1].model_dump(by_alias=True)
    with pytest.raises(ValidationError, match="throughput"):
        TrainRow(**fields, throughput=3.0)
    path = tmp_path / "metrics.jsonl"
    path.write_text(json.dumps({**fields, "throughput": 3.0}) + "\n")
    with pytest.raises(ValueError, match=rf"(?s)^{re.escape(str(path))}:1: .*throughput"):
        read_rows(path)


def test_rows_reject_negative_step():
    with pytest.raises(ValidationError):
        CheckpointRow(run_id="r", step=-1, path="/x")


def test_end_status_is_closed():
    with pytest.raises(ValidationError):
        EndRow(run_id="r", step=0, status="done", wall_s=1.0, tokens=0, final_loss=None)


def _generated_schemas() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("write_schemas", ROOT / "scripts" / "write_schemas.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.schemas()


def test_docs_generated_from_the_schema_are_current():
    generated = _generated_schemas()
    assert {"job.schema.json", "metrics.schema.json"} <= set(generated)
    stale = [name for name, text in generated.items() if (ROOT / "docs" / name).read_text() != text]
    assert stale == [], f"stale: {stale}; run python scripts/write_schemas.py"


def test_metrics_schema_documents_the_schema_key():
    schema = json.loads(_generated_schemas()["metrics.schema.json"])
    train = schema["$defs"]["TrainRow"]["properties"]
    assert "schema" in train and "schema_version" not in train
    assert train["loss"]["description"] == "Mean loss over the logged steps' target tokens; null if any was non-finite."


def test_an_end_row_without_an_exit_code_takes_its_statuses():
    """Writers that end a run in their own process (the engine, the Trainer callback) know the status, not
    yet the exit code: the row carries the code the status exits with, the same as trainhub.child's."""
    from trainhub.child import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
    from trainhub.metrics.rows import EXIT_CODES

    assert EXIT_CODES == {"completed": EXIT_OK, "interrupted": EXIT_INTERRUPTED, "failed": EXIT_FAILED}
    for status, code in EXIT_CODES.items():
        assert EndRow(run_id="r", step=0, status=status, wall_s=1.0, tokens=0, final_loss=None).exit_code == code
    assert EndRow(run_id="r", step=0, status="failed", wall_s=1.0, tokens=0, final_loss=None, exit_code=-9).exit_code == -9


def test_job_schema_accepts_extends():
    """A job file may carry `extends` (compose.py), so the published schema lists it as a name or a list."""
    extends = json.loads(_generated_schemas()["job.schema.json"])["properties"]["extends"]
    assert [branch.get("type") for branch in extends["anyOf"]] == ["string", "array"]
