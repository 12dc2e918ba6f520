"""What a new user runs into, through the real CLI (issue 32): each test failed before its fix.

A run folder that cannot be written, a run that failed before its first step, a byte that is not UTF-8,
what the console shows (once, in order, with the skip counts), the small commands a user reaches for,
and two processes on one run folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT, rows, run_cli, tiny_pretrain_job, write_job

WIDE = {"COLUMNS": "300"}


def _stories(tmp: Path, name: str, extra: bytes = b"") -> Path:
    """The first 60 shipped stories, `extra` (raw bytes, may be broken) inserted as the second line."""
    lines = (DATA / "stories.jsonl").read_bytes().splitlines()[:60]
    path = tmp / name
    path.write_bytes(b"\n".join(lines[:1] + ([extra] if extra else []) + lines[1:]) + b"\n")
    return path


NOT_UTF8 = b'{"text": "caf\xe9 au lait"}'  # latin-1, as a spreadsheet export writes it


# ----------------------------------------------------------------------------- item 2: output_dir


def _unwritable(tmp: Path, kind: str) -> Path:
    if kind == "proc":
        return Path("/proc/trainhub-test/run")
    if kind == "under-a-file":
        (tmp / "a-file").write_text("x")
        return tmp / "a-file" / "run"
    if os.geteuid() != 0:
        (tmp / "ro").mkdir()
        (tmp / "ro").chmod(0o555)
        return tmp / "ro" / "run"
    return Path("/sys/trainhub-test/run")  # root writes through modes; sysfs refuses a new folder


@pytest.mark.parametrize("kind", ["proc", "under-a-file", "read-only"])
def test_an_output_dir_that_cannot_be_written_is_refused_before_any_work(tmp_path, kind):
    out = _unwritable(tmp_path, kind)
    config = write_job(tmp_path / "job.yaml", tiny_pretrain_job(tmp_path, output_dir=str(out)))
    for command in ("validate", "plan", "train"):
        done = run_cli(command, "--config", str(config), env=WIDE)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert f"error {config}:2: output_dir: {out} cannot be created" in done.stderr, (command, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr
    assert not out.exists()


# ----------------------------------------------------------------------------- items 3, 5, 7: a failed first try


def test_a_run_that_failed_before_its_first_step_leaves_its_folder_usable(tmp_path):
    """A byte that is not UTF-8 stops the first try (data.on_error: error) at its line, said once, with the
    way out; --resume says there is nothing to resume; the same folder then trains with on_error skip,
    the old log kept, the bad record counted on the console and in the start row."""
    data = _stories(tmp_path, "stories.jsonl", NOT_UTF8)
    job = tiny_pretrain_job(tmp_path, data={"train": str(data), "eval": []}, train={"max_steps": 2})
    config = write_job(tmp_path / "job.yaml", job)
    run = tmp_path / "run"

    failed = run_cli("train", "--config", str(config), env=WIDE)
    assert failed.returncode == 1
    said = failed.stdout + failed.stderr
    message = f"{data}:2: not UTF-8 text (byte 0xe9 at column 14) (data.on_error: skip leaves bad records out " \
              f"and counts them)"
    assert said.count(message) == 1, said  # once: the child's line and its error row are one message
    assert "Traceback" not in said
    assert rows(run, "end")[0]["exit_code"] == 1 and rows(run, "train") == []

    nothing = run_cli("train", "--config", str(config), "--resume", env=WIDE)
    assert nothing.returncode == 1
    assert "there is nothing to resume; run the same command without --resume to start it" in nothing.stderr

    again = run_cli("train", "--config", str(config), "--set", "data.on_error=skip", env=WIDE)
    assert again.returncode == 0, again.stdout + again.stderr
    kept = list(run.glob("metrics.failed-*.jsonl"))
    assert len(kept) == 1 and f"starting again in it; its log is kept as {kept[0].name}" in again.stdout
    assert [json.loads(line)["event"] for line in kept[0].read_text().splitlines()] == ["error", "end"]
    assert [r["event"] for r in rows(run)][0] == "start"  # a log of its own
    assert rows(run, "start")[0]["data"]["train_skipped_invalid_utf8"] == 1
    assert "data left out or cut: train_skipped_invalid_utf8 1" in again.stdout
    assert rows(run, "end")[0]["exit_code"] == 0  # completed: the code the process exits with


# ----------------------------------------------------------------------------- item 7: the console


def test_an_sft_model_without_a_chat_template_is_refused_before_any_work(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (model / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    job = tiny_pretrain_job(tmp_path, method="sft", data={"train": str(DATA / "chat_eval.jsonl"),
                                                          "format": "messages", "eval": []})
    job["model"] = {"path": str(model)}
    config = write_job(tmp_path / "job.yaml", job)
    for command in ("validate", "train"):
        done = run_cli(command, "--config", str(config), env=WIDE)
        assert done.returncode == 1
        assert f"model.path: the tokenizer in {model} has no chat template to render conversations with; set " \
               f"data.template to one of: chatml" in done.stderr
        assert "Traceback" not in done.stdout + done.stderr
    assert run_cli("validate", "--config", str(config), "--set", "data.template=chatml").returncode == 0


def test_data_inspect_marks_the_trained_tokens_in_plain_text(tmp_path):
    """Piped (as here), there is no colour: the trained tokens are between [[ and ]]."""
    job = tiny_pretrain_job(tmp_path, method="sft", data={"train": str(DATA / "chat_eval.jsonl"),
                                                          "format": "messages", "max_length": 64, "eval": []})
    config = write_job(tmp_path / "job.yaml", job)
    done = run_cli("data", "inspect", "--config", str(config), "--n", "1", env=WIDE)
    assert done.returncode == 0, done.stdout + done.stderr
    first = json.loads((DATA / "chat_eval.jsonl").read_text().splitlines()[0])["messages"]
    answer = next(m["content"] for m in first if m["role"] == "assistant")
    assert "([[trained]], context)" in done.stdout
    assert f"<|im_start|>assistant\n[[{answer}<|im_end|>]]\n" in done.stdout, done.stdout
    assert done.stdout.count("[[") == 2  # the legend, and the one answer: system and user turns are context


# ----------------------------------------------------------------------------- item 8: small gaps


def test_version_doctor_and_backends_at_80_columns():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    done = run_cli("--version")
    assert (done.returncode, done.stdout) == (0, f"trainhub {version}\n")

    doctor = run_cli("doctor", env=WIDE)
    packages = next(line for line in doctor.stdout.splitlines() if line.startswith("packages: "))
    import torch
    import transformers

    assert f"torch {torch.__version__}" in packages and f"transformers {transformers.__version__}" in packages
    assert "peft " in packages and "trl " in packages
    assert doctor.stdout.startswith(f"trainhub {version}, python ")

    from trainhub.runners import RUNNERS

    narrow = run_cli("backends", env={"COLUMNS": "80"})
    assert narrow.returncode == 0
    assert max(map(len, narrow.stdout.splitlines())) <= 80 and "…" not in narrow.stdout
    for runner in RUNNERS.values():
        for feature in runner.features:
            assert f" {feature}," in narrow.stdout or f" {feature} " in narrow.stdout, feature


def test_validate_data_reads_every_record_before_any_gpu_is_booked(tmp_path):
    broken = b'{"text": "no closing brace"'
    data = _stories(tmp_path, "stories.jsonl", NOT_UTF8 + b"\n" + broken)
    config = write_job(tmp_path / "job.yaml", tiny_pretrain_job(tmp_path, data={"train": str(data), "eval": []}))
    assert run_cli("validate", "--config", str(config)).returncode == 0  # the schema alone is fine
    done = run_cli("validate", "--config", str(config), "--data", env=WIDE)
    assert done.returncode == 1
    assert f"error {data}:2: not UTF-8 text (byte 0xe9 at column 14)" in done.stderr
    assert f"error {data}:3: malformed JSON" in done.stderr  # every bad record, not only the first
    assert "2 bad records (invalid_utf8 1, malformed_json 1); training stops at the first. Fix them, or set " \
           "data.on_error: skip" in done.stderr
    assert "data train: 60 records to train on (files 1, records 62, " in done.stdout
    done = run_cli("validate", "--config", str(config), "--data", "--set", "data.on_error=skip", env=WIDE)
    assert done.returncode == 0, done.stderr
    assert "data: 2 bad records will be skipped (invalid_utf8 1, malformed_json 1)" in done.stdout


# ----------------------------------------------------------------------------- item 9: one writer per run folder


def _wait_for(predicate, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def _lock_is_free(run: Path) -> bool:
    with open(run / "run.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(f, fcntl.LOCK_UN)
        return True


def test_a_second_writer_is_refused_and_a_dead_runs_lock_never_blocks(tmp_path):
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 100_000, "save_every": 2, "keep_last": 1})
    config = write_job(tmp_path / "job.yaml", job)
    run = tmp_path / "run"
    live = subprocess.Popen([sys.executable, "-m", "trainhub", "train", "--config", str(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(lambda: (run / "metrics.jsonl").exists() and rows(run, "checkpoint"))
        second = run_cli("train", "--config", str(config), "--resume", env=WIDE)
        assert second.returncode == 1
        assert f"is in use by a live run: pid {live.pid} on {os.uname().nodename}, since " in second.stderr
        assert [r["event"] for r in rows(run) if r["event"] in ("start", "error", "end")] == ["start"]
    finally:
        live.kill()  # SIGKILL: the hub cannot release anything; its child is told to stop and saves
        live.wait()
    _wait_for(lambda: _lock_is_free(run))
    ended = rows(run, "end")
    assert [(e["status"], e["exit_code"]) for e in ended] == [("interrupted", 130)]
    assert json.loads((run / "run.lock").read_text())["pid"] == live.pid  # left behind by the dead hub

    steps = ended[0]["step"] + 2
    resumed = run_cli("train", "--config", str(config), "--resume", "--set", f"train.max_steps={steps}", env=WIDE)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    # the console shows this run only: not the old run's start line or its "interrupted" summary
    assert [line.split(":")[0] for line in resumed.stdout.splitlines() if line.startswith("run ")] == \
        [f"run {rows(run, 'start')[1]['run_id']}"]
    assert "interrupted after" not in resumed.stdout
    assert [e["status"] for e in rows(run, "end")] == ["interrupted", "completed"]
    assert (run / "run.lock").read_text() == ""  # released by the run that ended
