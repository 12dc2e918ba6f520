"""Native QLoRA through the real CLI on CPU: `train --config` with adapter qlora on a tiny pretrained model.
Loss falls, the adapter is saved and loads with peft on the unquantized base, and final/ is the adapter merged
into the original (unquantized) weights, loadable by transformers."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import ROOT, rows, run_cli, tiny_pretrain_job, train_losses, write_job

pytestmark = pytest.mark.slow  # the real `train` command
pytest.importorskip("torchao")


def test_qlora_sft_trains_saves_and_merges_onto_the_base(tmp_path, pretrained):
    job = tiny_pretrain_job(tmp_path)
    job.update({"name": "tiny-qlora", "model": {"path": str(pretrained)}, "method": {"type": "sft"},
                "adapter": {"type": "qlora", "rank": 4, "alpha": 8},
                "data": {"train": str(ROOT / "config/data/chat_eval.jsonl"), "format": "messages", "max_length": 96}})
    job["optim"], job["schedule"] = {"type": "adamw", "lr": 1e-2}, {"warmup_steps": 1}
    job["train"].update({"max_steps": 12, "micro_batch_size": 4, "grad_checkpointing": "selective"})
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)))
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "run"
    start = rows(run, "start")[0]
    assert 0 < start["params_trainable"] < start["params_total"] / 2
    losses = train_losses(run)
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]
    assert rows(run, "end")[-1]["status"] == "completed"

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(run / "final")
    expected = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(pretrained), str(run / "adapter"))
    expected = expected.merge_and_unload()
    ids = torch.arange(1, 17)[None]
    torch.testing.assert_close(merged(ids).logits, expected(ids).logits, atol=1e-5, rtol=0)
    base = AutoModelForCausalLM.from_pretrained(pretrained)
    assert (merged(ids).logits - base(ids).logits).abs().max() > 1e-3  # the adapter changed the model
