"""Data formats, bad records and mixtures through the real CLI, read from metrics.jsonl.

An alpaca file made from the shipped chat set, with four bad records in it: with on_error skip the
run trains on the rest and the start row counts each bad record by reason; with on_error error it
stops before training, naming the first bad record's file:line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import DATA, rows, run_cli, tiny_pretrain_job, train_losses, write_job

pytestmark = pytest.mark.slow  # the real `train` command

BAD = ['{"instruction": "What is 2 plus 2?", "output": "4"',  # malformed_json
       json.dumps({"instruction": "What is 2 plus 2?"}),  # missing_field
       json.dumps({"instruction": "What is 2 plus 2?", "output": 4}),  # wrong_type
       json.dumps({"instruction": " ", "output": "4"})]  # empty_field


def alpaca_file(tmp: Path) -> tuple[Path, list[dict], int]:
    """The shipped single-exchange conversations as alpaca records, a bad one after every tenth good one.

    Returns the file, the good records and the line of the first bad one."""
    good = []
    for line in (DATA / "chat.jsonl").read_text().splitlines()[:200]:
        turns = json.loads(line)["messages"]
        system = [m["content"] for m in turns if m["role"] == "system"]
        rest = [m for m in turns if m["role"] != "system"]
        if len(rest) == 2:
            good.append({"instruction": rest[0]["content"], "output": rest[1]["content"],
                         **({"system": system[0]} if system else {})})
    lines = [json.dumps(r) for r in good]
    for i, bad in enumerate(BAD):
        lines.insert(10 * (i + 1) + i, bad)
    path = tmp / "alpaca.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path, good, 11


def sft_job(tmp: Path, model: Path, data: dict) -> Path:
    job = tiny_pretrain_job(tmp)
    job.update({"name": "alpaca-sft", "model": {"path": str(model)}, "method": "sft",
                "data": {"max_length": 96, **data}})
    job["optim"], job["schedule"] = {"type": "adamw", "lr": 3e-3}, {"warmup_steps": 1}
    job["train"].update({"max_steps": 8, "micro_batch_size": 4})
    return write_job(tmp / "job.yaml", job)


def test_alpaca_sft_skips_and_counts_bad_records(tmp_path, pretrained):
    path, good, _ = alpaca_file(tmp_path)
    n_good = len(good)
    config = sft_job(tmp_path, pretrained, {"train": str(path), "on_error": "skip", "eval_fraction": 0.1})
    done = run_cli("train", "--config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "run"
    start = rows(run, "start")[0]
    data = start["data"]
    held = math.floor(0.1 * n_good + 0.5)
    assert {k: v for k, v in data.items() if k.startswith("train_skipped_")} == {
        "train_skipped_malformed_json": 1, "train_skipped_missing_field": 1, "train_skipped_wrong_type": 1,
        "train_skipped_empty_field": 1}
    assert data["train_records"] == n_good + len(BAD)
    assert data["train_held_out_for_eval"] == held
    assert data["train_conversations"] == n_good - held
    assert data["train_examples"] + data["train_dropped_no_target_after_truncation"] == n_good - held
    seen = ", ".join(sorted(good[0]))
    assert f"data.format auto: {path} read as alpaca, from fields {seen}" in start["notes"]
    losses = train_losses(run)
    assert len(losses) == 8 and all(math.isfinite(x) for x in losses)
    assert [r["step"] for r in rows(run, "eval")] == [8]  # the held-out records are the eval set
    assert rows(run, "end")[0]["status"] == "completed"


def test_alpaca_sft_with_on_error_error_names_the_first_bad_record(tmp_path, pretrained):
    path, _, line = alpaca_file(tmp_path)
    done = run_cli("train", "--config", str(sft_job(tmp_path, pretrained, {"train": str(path), "format": "alpaca"})))
    assert done.returncode == 1
    error = rows(tmp_path / "run", "error")[0]["message"]
    assert f"{path}:{line}: malformed JSON" in error
    assert rows(tmp_path / "run", "train") == []


def test_pretraining_on_a_weighted_mixture_of_file_types(tmp_path):
    stories = [json.loads(x)["text"] for x in (DATA / "stories.jsonl").read_text().splitlines()[:120]]
    (tmp_path / "txt").mkdir()
    for i in range(2):
        (tmp_path / "txt" / f"part{i}.txt").write_text("\n\n".join(stories[i * 40:(i + 1) * 40]) + "\n")
    (tmp_path / "more.json").write_text(json.dumps([{"text": t} for t in stories[80:]]))
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 4})
    job["data"] = {"train": [str(tmp_path / "txt"), {"path": str(tmp_path / "*.json"), "weight": 0.5}],
                   "format": "auto", "max_length": 32, "eval_fraction": 0.1}
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)))
    assert done.returncode == 0, done.stdout + done.stderr
    data = rows(tmp_path / "run", "start")[0]["data"]
    # txt: 80 documents, 8 held out, 72 drawn; json: 40 documents, 4 held out, 36 kept, half drawn
    assert {k: data[f"train_{k}"] for k in ("files", "records", "held_out_for_eval", "source0_records",
                                            "source0_drawn", "source1_records", "source1_drawn", "documents")} == \
        {"files": 3, "records": 120, "held_out_for_eval": 12, "source0_records": 72, "source0_drawn": 72,
         "source1_records": 36, "source1_drawn": 18, "documents": 90}
    assert len(rows(tmp_path / "run", "eval")) == 1
