"""The native engine through the real CLI on tiny models: what a user runs, read from metrics.jsonl."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT, rows, run_cli, tiny_pretrain_job, train_losses, write_job
from trainhub.metrics import read_rows

pytestmark = pytest.mark.slow  # the real `train` command, 15-60 s a test on 2 cores

GOLDEN = Path(__file__).resolve().parent.parent / "assets" / "golden_pretrain_losses.json"


def _train(tmp: Path, job: dict, *extra: str) -> subprocess.CompletedProcess:
    done = run_cli("train", "--config", str(write_job(tmp / "job.yaml", job)), *extra)
    return done


def _sft_job(tmp: Path, model: Path, **train) -> dict:
    job = tiny_pretrain_job(tmp)
    job.update({"name": "tiny-sft", "model": {"path": str(model)}, "method": {"type": "sft"},
                "data": {"train": str(ROOT / "config/data/chat_eval.jsonl"), "format": "messages", "max_length": 96}})
    job["optim"], job["schedule"] = {"type": "adamw", "lr": 3e-3}, {"warmup_steps": 1}
    job["train"].update({"max_steps": 8, "micro_batch_size": 4, **train})
    return job


def test_dry_run_is_one_step(tmp_path):
    out = tmp_path / "X"
    done = run_cli("train", "--config", "config/quickstart.yaml", "--dry-run", "--set", f"output_dir={out}",
                   "--set", "log.console=plain")
    assert done.returncode == 0, done.stdout + done.stderr
    assert [r["event"] for r in rows(out)] == ["start", "train", "end"]
    assert rows(out, "end")[0]["status"] == "completed"
    assert not (out / "final").exists()


def test_pretrain_from_nothing(tmp_path):
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 20, "eval_every": 10, "save_every": 10, "keep_last": 1})
    done = _train(tmp_path, job)
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "run"
    parsed = read_rows(run / "metrics.jsonl")  # every row validates against the schema
    assert [r.event for r in parsed][0] == "start" and parsed[-1].event == "end"
    losses = train_losses(run)
    assert len(losses) == 20 and all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5  # it learns
    evals = rows(run, "eval")
    assert [e["step"] for e in evals] == [10, 20]
    assert evals[-1]["perplexity"] == pytest.approx(math.exp(evals[-1]["eval_loss"]), rel=1e-6)
    start = rows(run, "start")[0]
    assert start["precision"] == "fp32" and start["params_trainable"] == start["params_total"]
    assert json.loads((run / "job.json").read_text())["output_dir"] == str(run)
    # keep_last=1: the last step is checkpointed too (final/ is made from it), and replaced step 10's
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-00000020"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-00000020"
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (run / "final" / name).is_file(), name

    # The exported model is the trained one: transformers, on the eval set rebuilt here from the saved
    # tokenizer (documents + EOS, cut into 32-token blocks; eval_batches 2 x micro-batch 8 = the first 16),
    # gives the eval loss the log reports at the last step, and a model of its shape untrained does far worse.
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(run / "final")
    tok = AutoTokenizer.from_pretrained(run / "final")
    assert tok.pad_token_id != tok.eos_token_id
    texts = [json.loads(line)["text"] for line in (DATA / "stories_eval.jsonl").read_text().splitlines()]
    ids = [t for seq in tok(texts, add_special_tokens=False)["input_ids"] for t in (*seq, tok.eos_token_id)]
    blocks = torch.tensor(ids[: 16 * 32]).view(16, 32)
    assert evals[-1]["eval_tokens"] == 16 * 31  # every position but the first is a target
    torch.manual_seed(0)
    untrained = AutoModelForCausalLM.from_config(model.config)
    with torch.no_grad():
        trained_loss = model(input_ids=blocks, labels=blocks).loss.item()
        untrained_loss = untrained(input_ids=blocks, labels=blocks).loss.item()
    assert trained_loss == pytest.approx(evals[-1]["eval_loss"], rel=1e-5)
    assert trained_loss < untrained_loss - 0.5, (trained_loss, untrained_loss)  # 4.86 vs 6.00


@pytest.mark.parametrize("variant", [{}, {"adapter": {"type": "lora", "rank": 4, "alpha": 8}, "packing": True}],
                         ids=["full", "lora-packed"])
def test_own_model_trains_as_transformers_does(tmp_path, pretrained, variant):
    """The same checkpoint trained by trainhub's own decoder (model.impl own) and by transformers' (hf):
    equal per-step losses, read from the metric log, full and LoRA over packed rows."""
    losses = {}
    for impl in ("own", "hf"):
        d = tmp_path / impl
        d.mkdir()
        job = _sft_job(d, pretrained, max_steps=4)
        job["model"]["impl"] = impl
        if "adapter" in variant:
            job["adapter"] = variant["adapter"]
        job["data"]["packing"] = variant.get("packing", False)
        done = _train(d, job)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"model: {'trainhub' if impl == 'own' else 'transformers'} implementation" in \
            rows(d / "run", "start")[0]["notes"]
        losses[impl] = train_losses(d / "run")
    assert len(losses["own"]) == 4 and losses["own"] == pytest.approx(losses["hf"], abs=1e-5)


def test_chunked_loss_trains_as_the_eager_loss(tmp_path):
    """train.loss chunked (the logits never whole) and eager: the same per-step losses."""
    for loss in ("eager", "chunked"):
        d = tmp_path / loss
        d.mkdir()
        done = _train(d, tiny_pretrain_job(d, train={"max_steps": 5, "loss": loss}))
        assert done.returncode == 0, done.stdout + done.stderr
    assert train_losses(tmp_path / "chunked" / "run") == pytest.approx(train_losses(tmp_path / "eager" / "run"),
                                                                       abs=1e-5)


def test_accumulation_equivalence_pretrain(tmp_path):
    """micro-batch 2 x accumulation 2 == micro-batch 4 x accumulation 1, step for step."""
    for name, mb, ga in (("a", 2, 2), ("b", 4, 1)):
        d = tmp_path / name
        d.mkdir()
        job = tiny_pretrain_job(d, train={"micro_batch_size": mb, "grad_accum": ga, "max_steps": 6})
        done = _train(d, job)
        assert done.returncode == 0, done.stdout + done.stderr
    la, lb = train_losses(tmp_path / "a" / "run"), train_losses(tmp_path / "b" / "run")
    assert la == pytest.approx(lb, abs=1e-5)


def test_accumulation_equivalence_sft(tmp_path, pretrained):
    """Variable-length conversations: the loss is normalised over all target tokens of the step."""
    for name, mb, ga in (("a", 2, 2), ("b", 4, 1)):
        d = tmp_path / name
        d.mkdir()
        job = _sft_job(d, pretrained, micro_batch_size=mb, grad_accum=ga, max_steps=5)
        job["data"]["shuffle"] = True
        done = _train(d, job)
        assert done.returncode == 0, done.stdout + done.stderr
    assert train_losses(tmp_path / "a" / "run") == pytest.approx(train_losses(tmp_path / "b" / "run"), abs=1e-5)


def test_full_sft(tmp_path, pretrained):
    done = _train(tmp_path, _sft_job(tmp_path, pretrained, max_steps=12))
    assert done.returncode == 0, done.stdout + done.stderr
    losses = train_losses(tmp_path / "run")
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    data = rows(tmp_path / "run", "start")[0]["data"]
    assert data["train_conversations"] == 60  # every conversation is used or counted as dropped
    assert data["train_examples"] + data["train_dropped_no_target_after_truncation"] == 60

    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final")


def test_lora_sft(tmp_path, pretrained):
    job = _sft_job(tmp_path, pretrained, max_steps=12)
    job["adapter"] = {"type": "lora", "rank": 4, "alpha": 8}
    job["optim"]["lr"] = 1e-2
    done = _train(tmp_path, job)
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "run"
    start = rows(run, "start")[0]
    assert 0 < start["params_trainable"] < start["params_total"] / 2
    losses = train_losses(run)
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert (run / "adapter" / "adapter_config.json").is_file()

    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(run / "final")
    base = AutoModelForCausalLM.from_pretrained(pretrained)
    assert not all(
        (a == b).all() for a, b in zip(merged.state_dict().values(), base.state_dict().values(), strict=True)
    ), "the merged LoRA model should differ from its base"


def test_native_lora_without_merged_export(tmp_path, pretrained):
    job = tiny_pretrain_job(tmp_path)
    job.update({"name": "no-merge", "model": {"path": str(pretrained)}, "method": "sft",
                "adapter": {"type": "lora", "rank": 4, "alpha": 8}, "export": {"merged": False},
                "data": {"train": str(ROOT / "config/data/chat_eval.jsonl"), "format": "messages", "max_length": 64}})
    job["train"]["max_steps"] = 2
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)))
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "run"
    assert not (run / "final").exists()
    assert (run / "adapter" / "adapter_config.json").is_file() and (run / "adapter" / "tokenizer.json").is_file()
    assert rows(run, "checkpoint")[-1]["path"] == str(run / "adapter")


def test_bad_config_fails_before_any_work(tmp_path):
    job = tiny_pretrain_job(tmp_path)
    job["train"]["max_step"] = job["train"].pop("max_steps")
    done = _train(tmp_path, job)
    assert done.returncode == 1
    assert "train.max_step" in done.stderr and "train.max_steps" in done.stderr
    assert not (tmp_path / "run").exists()


def test_bad_record_is_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": "broken\n')
    job = tiny_pretrain_job(tmp_path)
    job["data"].update({"train": str(bad), "eval": []})
    done = _train(tmp_path, job)
    assert done.returncode == 1
    assert f"{bad}:2" in done.stdout
    error = rows(tmp_path / "run", "error")[0]
    assert f"{bad}:2" in error["message"] and "malformed JSON" in error["message"]
    assert rows(tmp_path / "run", "end")[0]["status"] == "failed"


def test_run_folder_in_use_is_refused(tmp_path):
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 1})
    assert _train(tmp_path, job).returncode == 0
    again = _train(tmp_path, job)
    assert again.returncode == 1 and "already holds a run" in again.stderr


def test_ctrl_c_saves_and_exits_interrupted(tmp_path):
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 100_000})
    config = write_job(tmp_path / "job.yaml", job)
    hub = subprocess.Popen([sys.executable, "-m", "trainhub", "train", "--config", str(config)], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and '"event":"train"' in metrics.read_text()):
        time.sleep(0.2)
    hub.send_signal(signal.SIGINT)
    out, _ = hub.communicate(timeout=120)
    assert hub.returncode == 130, out
    end = rows(tmp_path / "run", "end")[0]
    assert end["status"] == "interrupted"
    ckpt = rows(tmp_path / "run", "checkpoint")[0]
    assert Path(ckpt["path"]).is_dir() and ckpt["step"] == end["step"]
    assert json.loads((Path(ckpt["path"]) / "state.json").read_text())["step"] == end["step"]
