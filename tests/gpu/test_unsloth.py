"""Backend `unsloth` on a CUDA GPU: real LoRA SFT, QLoRA SFT, DPO, ORPO, KTO and GRPO steps through
`train --backend unsloth`.

Skipped without CUDA or without Unsloth importable. The environment is adopted from the running
interpreter (`trainhub env setup unsloth --python <this python>`), as on the GPU machine, where
Unsloth comes as wheels (../shared/gpu/README.md).
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, rows, run_cli, train_losses, write_job

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
              pytest.mark.skipif(importlib.util.find_spec("unsloth") is None, reason="needs unsloth installed")]

CHAT = ROOT / "config/data/chat_eval.jsonl"


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    """A small Llama (head_dim 64, the smallest Unsloth's kernels are made for) with random weights and a
    BPE tokenizer trained on the shipped stories, its pad token distinct from EOS (Unsloth requires it)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    from trainhub.data.tokenizer import train_bpe

    folder = tmp_path_factory.mktemp("unsloth_model") / "model"
    texts = [json.loads(line)["text"] for line in (ROOT / "config/data/stories.jsonl").read_text().splitlines()]
    tok = train_bpe(texts[:500], 1024, 2, template="chatml")
    assert tok.pad_token_id != tok.eos_token_id
    config = LlamaConfig(vocab_size=len(tok), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", autouse=True)
def unsloth_env():
    """Adopt this interpreter as Unsloth's environment (in the tests' private TRAINHUB_HOME)."""
    from trainhub import envs

    if envs.python_of("unsloth") is None:
        envs.setup("unsloth", python=sys.executable, say=lambda *_: None)


def sft_job(tmp: Path, model: Path, adapter: dict, **train) -> dict:
    return {
        "name": "gpu-unsloth", "output_dir": str(tmp / "run"), "seed": 0, "backend": "unsloth",
        "model": {"path": str(model), "dtype": "bfloat16"}, "method": "sft", "adapter": adapter,
        "data": {"train": str(CHAT), "format": "messages", "max_length": 256},
        "optim": {"type": "adamw", "lr": 1e-3}, "schedule": {"warmup_steps": 1},
        "train": {"micro_batch_size": 4, "max_steps": 6, "precision": "bf16", "grad_checkpointing": True,
                  "log_every": 1, "on_nonfinite": "stop", **train},
        "log": {"console": "plain"},
    }


def _train(tmp: Path, job: dict, *extra: str):
    done = run_cli("train", "--config", str(write_job(tmp / "job.yaml", job)), *extra)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    return done


def _finite_and_learning(run: Path) -> None:
    losses = train_losses(run)
    assert losses and all(math.isfinite(x) for x in losses), losses
    assert losses[-1] < losses[0], losses  # lr 1e-3 on the same few chats: it learns
    train = rows(run, "train")
    assert all(r["mem_gb"] and r["mem_gb"] > 0 and r["tokens_per_s"] > 0 for r in train)
    assert rows(run, "end")[0]["status"] == "completed"


def test_lora_sft(tmp_path, small_model):
    job = sft_job(tmp_path, small_model, {"type": "lora", "rank": 8, "alpha": 16, "targets": "all-linear"})
    _train(tmp_path, job)
    run = tmp_path / "run"
    _finite_and_learning(run)
    train = rows(run, "train")  # each step's row written one step late (hf_deferred.py): all there, in order
    assert [r["step"] for r in train] == [1, 2, 3, 4, 5, 6]
    tokens = [r["tokens"] for r in train]
    assert tokens[0] > 0 and all(b > a for a, b in zip(tokens, tokens[1:], strict=False)), tokens
    start = rows(run, "start")[0]
    assert start["backend"] == "unsloth" and start["hardware"]["device"] == "cuda"
    assert 0 < start["params_trainable"] < start["params_total"]
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert (run / "final" / "config.json").is_file()  # export.merged (default): merged 16-bit model
    assert not (ROOT / "unsloth_compiled_cache").exists()  # the compile cache stays in the run folder
    from transformers import AutoModelForCausalLM

    merged = AutoModelForCausalLM.from_pretrained(run / "final")
    assert merged.config.hidden_size == 256 and not hasattr(merged, "peft_config")


def test_qlora_sft(tmp_path, small_model):
    job = sft_job(tmp_path, small_model, {"type": "qlora", "rank": 8, "alpha": 16, "targets": "all-linear"})
    job["export"] = {"merged": False}
    _train(tmp_path, job)
    run = tmp_path / "run"
    _finite_and_learning(run)
    assert any("4-bit NF4" in n for n in rows(run, "start")[0]["notes"])
    assert (run / "adapter" / "adapter_config.json").is_file() and not (run / "final").exists()


def test_dry_run_is_one_step(tmp_path, small_model):
    job = sft_job(tmp_path, small_model, {"type": "lora", "rank": 4, "alpha": 8})
    _train(tmp_path, job, "--dry-run")
    run = tmp_path / "run"
    assert [r["event"] for r in rows(run)] == ["start", "train", "end"]
    assert rows(run, "train")[0]["step"] == 1


def test_dpo(tmp_path, small_model):
    job = sft_job(tmp_path, small_model, {"type": "lora", "rank": 8, "alpha": 16})
    job.update(method={"type": "dpo", "beta": 0.1}, export={"merged": False},
               data={"train": str(ROOT / "config/data/preference.jsonl"), "format": "preference", "max_length": 128})
    _train(tmp_path, job)
    run = tmp_path / "run"
    losses = train_losses(run)
    assert losses and all(math.isfinite(x) for x in losses)
    assert all(r["method"]["reward_margin"] is not None for r in rows(run, "train"))
    assert (run / "adapter" / "adapter_config.json").is_file()


def test_nonfinite_skip(tmp_path, small_model):
    """train.on_nonfinite: skip under Unsloth, with the log one step late: the bad step's row has a null
    loss and the count, the steps after it train on with finite losses, the run completes."""
    job = sft_job(tmp_path, small_model, {"type": "lora", "rank": 8, "alpha": 16}, on_nonfinite="skip")
    job["export"] = {"merged": False}
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)),
                   env={"TRAINHUB_INJECT_NONFINITE": "3"})
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    train = {r["step"]: r for r in rows(tmp_path / "run", "train")}
    assert train[3]["loss"] is None and [train[s]["nonfinite_skipped"] for s in range(1, 7)] == [0, 0, 1, 1, 1, 1]
    assert all(math.isfinite(train[s]["loss"]) for s in (1, 2, 4, 5, 6))
    assert rows(tmp_path / "run", "end")[0]["nonfinite_skipped"] == 1


@pytest.mark.parametrize("method", [{"type": "orpo", "beta": 0.2},
                                    {"type": "kto", "desirable_weight": 1.0, "undesirable_weight": 1.2}],
                         ids=["orpo", "kto"])
def test_orpo_and_kto(tmp_path, small_model, method):
    """ORPO and KTO under Unsloth's patched trainers: finite losses, the method's rewards in the rows,
    tokens counted (ORPO's pair batches hold no input_ids: its collator counts), the adapter saved, and
    no setting changed behind the job's back."""
    job = sft_job(tmp_path, small_model, {"type": "lora", "rank": 8, "alpha": 16})
    job.update(method=method, export={"merged": False},
               data={"train": str(ROOT / "config/data/preference.jsonl"), "format": "preference", "max_length": 128})
    _train(tmp_path, job)
    run = tmp_path / "run"
    losses = train_losses(run)
    assert losses and all(math.isfinite(x) for x in losses), losses
    train = rows(run, "train")
    stats = train[-1]["method"]
    assert math.isfinite(stats["chosen_reward"]) and math.isfinite(stats["rejected_reward"])
    assert train[-1]["tokens"] > 0 and all(r["tokens_per_s"] > 0 for r in train)
    assert not [n for n in rows(run, "start")[0]["notes"] if n.startswith("unsloth changed")]
    assert (run / "adapter" / "adapter_config.json").is_file()


@pytest.mark.parametrize("algorithm", ["grpo", "dapo"])
def test_grpo(tmp_path, small_model, algorithm):
    """GRPO steps with the settings Unsloth would otherwise pick itself set from the job: the start row
    says nothing was changed behind the job's back."""
    job = sft_job(tmp_path, small_model, {"type": "lora", "rank": 8, "alpha": 16})
    job.update(method={"type": "grpo", "algorithm": algorithm, "group_size": 4, "max_new_tokens": 16,
                       "kl_beta": 0.0, "rewards": [{"function": "trainhub.rewards:exact_match"},
                                                   {"function": "trainhub.rewards:answer_format", "weight": 0.2}]},
               export={"merged": False},
               data={"train": str(ROOT / "config/data/arithmetic.jsonl"), "format": "prompt", "max_length": 96,
                     "overlong": "drop"})
    job["train"].update(micro_batch_size=8, max_steps=3)
    _train(tmp_path, job)
    run = tmp_path / "run"
    train = rows(run, "train")
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all(r["method"]["reward_mean"] is not None and r["loss"] is not None for r in train)
    notes = rows(run, "start")[0]["notes"]
    assert not [n for n in notes if n.startswith("unsloth changed") and any(
        k in n for k in ("loss_type", "beta", "epsilon", "scale_rewards", "mask_truncated"))], notes


def test_grpo_completions_past_the_prompt_bound(tmp_path, small_model):
    """Prompt + completion longer than data.max_length (the prompt bound), as in the GRPO benchmark: Unsloth
    cuts input_ids to max_seq_length, so trainhub must size it for prompt + completion (it asserted before)."""
    job = sft_job(tmp_path, small_model, {"type": "lora", "rank": 8, "alpha": 16})
    job.update(method={"type": "grpo", "algorithm": "dapo", "group_size": 4, "max_new_tokens": 128,
                       "kl_beta": 0.0, "rewards": [{"function": "trainhub.rewards:answer_format"}]},
               export={"merged": False},
               data={"train": str(ROOT / "config/data/arithmetic.jsonl"), "format": "prompt", "max_length": 96,
                     "overlong": "drop"})
    job["train"].update(micro_batch_size=8, max_steps=2)
    _train(tmp_path, job)
    train = rows(tmp_path / "run", "train")
    assert [r["step"] for r in train] == [1, 2] and all(r["loss"] is not None for r in train)
    assert max(r["method"]["completion_length"] for r in train) > 96  # so prompt + completion passed 96


def test_save_and_resume(tmp_path, small_model):
    """Trainer checkpoints every 2 steps carry trainhub's markers; --resume continues at step 4 with the token
    count carried over, and refuses a changed job."""
    job = sft_job(tmp_path, small_model, {"type": "lora", "rank": 8, "alpha": 16}, max_steps=4, save_every=2)
    job["export"] = {"merged": False}
    job["schedule"] = {"warmup_steps": 1, "decay": "constant"}
    _train(tmp_path, job)
    run = tmp_path / "run"
    assert (run / "checkpoints" / "latest").read_text().strip() == "checkpoint-4"
    assert json.loads((run / "checkpoints" / "checkpoint-4" / "state.json").read_text())["step"] == 4
    _train(tmp_path, job, "--resume", "--set", "train.max_steps=6")
    starts = rows(run, "start")
    assert starts[-1]["resumed_from"].endswith("checkpoint-4") and starts[-1]["step"] == 4
    assert [r["step"] for r in rows(run, "train")] == [1, 2, 3, 4, 5, 6]
    tokens = [r["tokens"] for r in rows(run, "train")]
    assert tokens == sorted(tokens) and tokens[4] > tokens[3]
    changed = run_cli("train", "--config", str(tmp_path / "job.yaml"), "--resume", "--set", "optim.lr=0.5")
    assert changed.returncode == 1 and "optim.lr" in changed.stderr


def test_tokenizer_without_a_pad_token(tmp_path, small_model):
    """Llama 3's tokenizer has no pad token: trainhub pads with EOS (masked by position, never by id), and
    Unsloth, which repairs pad == eos in its own copy of the tokenizer, must still train on trainhub's."""
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "nopad"
    shutil.copytree(small_model, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    tok.pad_token = None
    tok.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "pad_token_id": None}))
    job = sft_job(tmp_path, folder, {"type": "lora", "rank": 8, "alpha": 16})
    job["export"] = {"merged": False}
    _train(tmp_path, job)
    _finite_and_learning(tmp_path / "run")
