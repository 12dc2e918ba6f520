"""The data path end to end: cached datasets, packed SFT through the CLI, and `trainhub data inspect`."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

from tests.conftest import ROOT, rows, run_cli, tiny_pretrain_job, train_losses, write_job
from trainhub.data.dataset import build_datasets
from trainhub.data.tokenizer import train_bpe
from trainhub.jobfile import load


def _sft_job(tmp, model, **data) -> dict:
    job = tiny_pretrain_job(tmp)
    job.update({"name": "data-sft", "model": {"path": str(model)}, "method": {"type": "sft"},
                "data": {"train": str(ROOT / "config/data/chat_eval.jsonl"), "format": "messages",
                         "max_length": 96, **data}})
    job["train"].update({"max_steps": 8, "micro_batch_size": 2})
    return job


def test_cache_is_reused_and_keyed_by_content(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINHUB_HOME", str(tmp_path / "home"))
    data = tmp_path / "chat.jsonl"
    shutil.copy(ROOT / "config/data/chat_eval.jsonl", data)
    config = write_job(tmp_path / "job.yaml", {
        "name": "c", "model": {"path": str(tmp_path)}, "method": "sft",
        "data": {"train": str(data), "format": "messages", "max_length": 64}, "train": {"max_steps": 1}})
    job = load(config)
    tok = train_bpe([line for line in data.read_text().splitlines()], vocab_size=320, min_frequency=1)
    first, second = build_datasets(job, tok), build_datasets(job, tok)
    assert (first.cache, second.cache) == ("miss", "hit")
    assert first.train.stats == second.train.stats
    for a, b, la, lb in zip(first.train.input_ids, second.train.input_ids, first.train.labels, second.train.labels,
                            strict=True):
        assert torch.equal(a, b) and torch.equal(la, lb)
    data.write_text(data.read_text().replace("12", "13"))  # same size, other content: a new key
    assert build_datasets(job, tok).cache == "miss"


@pytest.mark.slow  # the real CLI, on the session's pretrained model
def test_packed_sft_through_the_cli(tmp_path, pretrained):
    job = _sft_job(tmp_path, pretrained, packing=True)
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)))
    assert done.returncode == 0, done.stdout + done.stderr
    start = rows(tmp_path / "run", "start")[0]
    assert start["data"]["train_packed_rows"] < start["data"]["train_examples"]
    assert start["data"]["train_packed_fill_permille"] > 700
    losses = train_losses(tmp_path / "run")
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    # tokens counted are real tokens, not the padded rows
    assert rows(tmp_path / "run", "train")[-1]["tokens"] < 8 * 2 * 96


@pytest.mark.slow  # the real CLI, on the session's pretrained model
def test_data_inspect_shows_examples_stats_and_counts(tmp_path, pretrained):
    job = _sft_job(tmp_path, pretrained)
    done = run_cli("data", "inspect", "--config", str(write_job(tmp_path / "job.yaml", job)), "--n", "2",
                   env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "example 0" in out and "example 1" in out and "example 2" not in out
    for word in ("trained", "median", "p95", "packing fill", "conversations", "examples"):
        assert word in out, word
    assert not (tmp_path / "run").exists()  # inspecting trains nothing and writes no run folder
