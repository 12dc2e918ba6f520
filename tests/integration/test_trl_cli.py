"""The trl backend through the real CLI on a tiny model: every method, and GRPO with each algorithm,
runs 2-3 steps with finite metric rows, read from metrics.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.conftest import DATA, rows, run_cli, write_job
from trainhub.metrics import read_rows

pytestmark = pytest.mark.slow  # the trl backend through the real `train` command

pytest.importorskip("trl")

REWARDS = [{"function": "trainhub.rewards:exact_match", "weight": 1.0},
           {"function": "trainhub.rewards:answer_format", "weight": 0.5}]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random-init Llama (hidden 32, 2 layers) with a byte-level BPE trained on the shipped data."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainhub.data.sources import training_texts
    from trainhub.data.tokenizer import train_bpe
    from trainhub.job import DataSection

    folder = tmp_path_factory.mktemp("trl_model") / "model"
    texts = [t for name in ("chat_eval.jsonl", "preference_eval.jsonl", "arithmetic.jsonl")
             for t in training_texts(DataSection(train=str(DATA / name)), seed=0)]
    tok = train_bpe(texts, vocab_size=400)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=None))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def trl_job(tmp: Path, model: Path, method, **over) -> dict:
    kind = method if isinstance(method, str) else method["type"]
    data = {"sft": {"train": str(DATA / "chat_eval.jsonl"), "format": "messages", "max_length": 96},
            "grpo": {"train": str(DATA / "arithmetic.jsonl"), "format": "prompt", "max_length": 64,
                     "overlong": "drop"}}.get(kind, {"train": str(DATA / "preference_eval.jsonl"),
                                                     "format": "preference", "max_length": 96})
    job = {"name": f"trl-{kind}", "output_dir": str(tmp / "run"), "seed": 0, "backend": "trl",
           "model": {"path": str(model)}, "method": method, "data": data,
           "optim": {"type": "adamw", "lr": 1e-3}, "schedule": {"warmup_steps": 1},
           "train": {"micro_batch_size": 4, "max_steps": 2, "precision": "fp32", "log_every": 1,
                     "on_nonfinite": "stop"},
           "log": {"console": "plain"}}
    for key, value in over.items():
        job[key] = {**job[key], **value} if isinstance(value, dict) else value
    return job


def train(tmp: Path, job: dict, *extra: str):
    return run_cli("train", "--config", str(write_job(tmp / "job.yaml", job)), *extra)


def finite_rows(run: Path, steps: int) -> list[dict]:
    parsed = read_rows(run / "metrics.jsonl")  # every row validates against the schema
    assert parsed[0].event == "start" and parsed[-1].event == "end" and parsed[-1].status == "completed"
    assert parsed[0].backend == "trl"
    train_rows = rows(run, "train")
    assert [r["step"] for r in train_rows] == list(range(1, steps + 1))
    for r in train_rows:
        assert math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) and r["tokens_per_s"] > 0
        assert r["tokens"] > 0 and r["lr"] > 0
    return train_rows


METHODS = [
    pytest.param("sft", id="sft"),
    pytest.param({"type": "dpo", "beta": 0.2, "loss": "sigmoid"}, id="dpo"),
    pytest.param({"type": "orpo", "beta": 0.2}, id="orpo"),
    pytest.param({"type": "kto", "desirable_weight": 1.0, "undesirable_weight": 1.2}, id="kto"),
]


@pytest.mark.parametrize("method", METHODS)
def test_method_runs(tmp_path, tiny_model, method):
    kind = method if isinstance(method, str) else method["type"]
    job = trl_job(tmp_path, tiny_model, method)
    if kind == "dpo":  # with an eval set, evaluated at the end
        job["data"]["eval"] = str(DATA / "preference_eval.jsonl")
        job["train"]["eval_batches"] = 2
    done = train(tmp_path, job)
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "run"
    train_rows = finite_rows(run, 2)
    if kind == "dpo":
        [ev] = rows(run, "eval")
        assert ev["step"] == 2 and math.isfinite(ev["eval_loss"]) and ev["eval_tokens"] > 0
        assert math.isfinite(ev["method"]["reward_margin"])
    if kind == "sft":
        assert "method" not in train_rows[0]
    else:
        stats = train_rows[-1]["method"]
        assert math.isfinite(stats["chosen_reward"]) and math.isfinite(stats["rejected_reward"])
        if kind != "kto":
            assert stats["reward_margin"] == pytest.approx(stats["chosen_reward"] - stats["rejected_reward"],
                                                           abs=1e-5)
    assert (run / "final" / "config.json").is_file() and (run / "final" / "tokenizer.json").is_file()


def test_sft_loss_curve_equals_native(tmp_path, tiny_model):
    """The same SFT job on trl and native: trainhub's data, optimizer and schedule under TRL's trainer give
    native's loss at every step (TRL's SFTTrainer, trainhub's padding collator)."""
    curves = {}
    for backend in ("native", "trl"):
        job = trl_job(tmp_path / backend, tiny_model, "sft", backend=backend, train={"max_steps": 6})
        (tmp_path / backend).mkdir()
        done = train(tmp_path / backend, job)
        assert done.returncode == 0, done.stdout + done.stderr
        curves[backend] = [r["loss"] for r in rows(tmp_path / backend / "run", "train")]
    assert len(curves["trl"]) == 6
    assert curves["trl"] == pytest.approx(curves["native"], rel=1e-4), curves


VARIED = "def variety(prompts, completions, **kw):\n    return [len(set(c[-1]['content'])) / 10 for c in completions]\n"


@pytest.mark.parametrize("algorithm", ["grpo", "dr_grpo", "dapo", "gspo"])
def test_grpo_algorithms(tmp_path, tiny_model, algorithm):
    """The built-in rewards (all 0 for a random model) plus one from a file that differs between random
    completions, so advantages and gradients are not zero."""
    (tmp_path / "varied.py").write_text(VARIED)
    rewards = [*REWARDS, {"function": f"{tmp_path / 'varied.py'}:variety", "weight": 1.0}]
    method = {"type": "grpo", "algorithm": algorithm, "group_size": 2, "max_new_tokens": 8, "rewards": rewards}
    done = train(tmp_path, trl_job(tmp_path, tiny_model, method, train={"max_steps": 2}))
    assert done.returncode == 0, done.stdout + done.stderr
    train_rows = finite_rows(tmp_path / "run", 2)
    stats = train_rows[-1]["method"]
    assert set(stats["rewards"]) == {"exact_match", "answer_format", "variety"}
    assert math.isfinite(stats["reward_mean"]) and stats["reward_std"] > 0
    if algorithm != "dapo":  # dapo masks truncated completions, and a random model's are nearly all cut at 8
        assert any(r["grad_norm"] > 0 for r in train_rows)
    assert 0 <= stats["clip_ratio"] <= 1 and 0 < stats["completion_length"] <= 8
    config = json.loads((tmp_path / "run" / "job.json").read_text())
    assert config["method"]["algorithm"] == algorithm


def test_plan_shows_the_trl_config(tmp_path, tiny_model):
    method = {"type": "grpo", "algorithm": "gspo", "group_size": 2, "max_new_tokens": 8, "rewards": REWARDS}
    path = write_job(tmp_path / "job.yaml", trl_job(tmp_path, tiny_model, method))
    done = run_cli("plan", "--config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "trl: trl.GRPOTrainer with GRPOConfig:" in out and "-m trainhub.runners.trl.child" in out
    for line in ('importance_sampling_level = "sequence"', "epsilon = 0.0003", 'loss_type = "grpo"',
                 "bf16 = false", "use_vllm = false", "gradient_checkpointing = false",
                 "reward_funcs = [trainhub.rewards:exact_match, trainhub.rewards:answer_format]"):
        assert line in out, line


def test_dry_run_then_save_and_resume(tmp_path, tiny_model):
    """A run resumed from its step-4 checkpoint takes the same steps 5 and 6 as an uninterrupted run (a
    constant schedule, so the two runs' lengths do not change the learning rate)."""
    job = trl_job(tmp_path, tiny_model, "sft", train={"max_steps": 4, "save_every": 2},
                  schedule={"warmup_steps": 1, "decay": "constant"})
    dry = train(tmp_path, {**job, "output_dir": str(tmp_path / "dry")}, "--dry-run")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert [r["event"] for r in rows(tmp_path / "dry")] == ["start", "train", "end"]
    assert not (tmp_path / "dry" / "final").exists()

    done = train(tmp_path, job)
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "run"
    saved = [r["path"] for r in rows(run, "checkpoint")]
    assert [Path(p).name for p in saved] == ["checkpoint-2", "checkpoint-4", "final"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "checkpoint-4"
    assert json.loads((run / "checkpoints" / "checkpoint-4" / "state.json").read_text())["step"] == 4

    more = train(tmp_path, job, "--resume", "--set", "train.max_steps=6")
    assert more.returncode == 0, more.stdout + more.stderr
    starts = rows(run, "start")
    assert starts[-1]["resumed_from"].endswith("checkpoint-4") and starts[-1]["step"] == 4
    assert [r["step"] for r in rows(run, "train")] == [1, 2, 3, 4, 5, 6]
    tokens = [r["tokens"] for r in rows(run, "train")]
    assert tokens == sorted(tokens) and tokens[4] > tokens[3]  # cumulative across the resume

    whole = train(tmp_path, {**job, "output_dir": str(tmp_path / "whole"), "train": {**job["train"], "max_steps": 6}})
    assert whole.returncode == 0, whole.stdout + whole.stderr
    resumed = {r["step"]: r["loss"] for r in rows(run, "train")}
    assert [resumed[5], resumed[6]] == pytest.approx([r["loss"] for r in rows(tmp_path / "whole", "train")][4:],
                                                     abs=1e-5)

    changed = train(tmp_path, job, "--resume", "--set", "optim.lr=0.5")
    assert changed.returncode == 1 and "optim.lr" in changed.stderr


def test_reward_returning_text_stops_before_training(tmp_path, tiny_model):
    reward = tmp_path / "bad_reward.py"
    reward.write_text("def score(prompts, completions, **kw):\n    return ['good' for _ in completions]\n")
    method = {"type": "grpo", "group_size": 2, "max_new_tokens": 8, "rewards": [{"function": f"{reward}:score"}]}
    done = train(tmp_path, trl_job(tmp_path, tiny_model, method))
    assert done.returncode == 1
    [error] = rows(tmp_path / "run", "error")
    assert error["message"].startswith(f"method.rewards[0] ({reward}:score): ")
    assert "returned 'good' (str) for a completion" in error["message"]
    assert rows(tmp_path / "run", "train") == [] and rows(tmp_path / "run", "start") == []


def test_ctrl_c_saves_and_exits_130(tmp_path, tiny_model):
    from tests.integration.test_resume import _interrupt_after

    job = trl_job(tmp_path, tiny_model, "sft", train={"max_steps": 500})
    done = _interrupt_after(write_job(tmp_path / "job.yaml", job), tmp_path / "run", min_step=2)
    assert done.returncode == 130, done.stdout
    run = tmp_path / "run"
    end = rows(run, "end")[-1]
    assert end["status"] == "interrupted" and end["step"] >= 2
    latest = (run / "checkpoints" / "latest").read_text().strip()
    assert latest == f"checkpoint-{end['step']}" and rows(run, "checkpoint")[-1]["path"].endswith(latest)
    assert not (run / "final").exists()


@pytest.mark.parametrize(("policy", "inject", "limit"), [("skip", "2", 5), ("stop", "2", 5), ("skip", "2,3,4", 3)])
def test_nonfinite_steps_as_native(tmp_path, tiny_model, policy, inject, limit):
    """train.on_nonfinite under TRL's Trainer, as the native engine (tests/integration/test_resume.py):
    skip drops the bad step's update, writes its row with a null loss and counts it, and trains on with
    finite losses; stop ends the run failed without saving; nonfinite_limit skips in a row end it too."""
    job = trl_job(tmp_path, tiny_model, "sft", train={"max_steps": 5, "on_nonfinite": policy,
                                                      "nonfinite_limit": limit, "save_every": 4})
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)),
                   env={"TRAINHUB_INJECT_NONFINITE": inject})
    run = tmp_path / "run"
    train = {r["step"]: r for r in rows(run, "train")}
    end = rows(run, "end")[-1]
    assert train[1]["loss"] is not None and train[2]["loss"] is None
    if policy == "skip" and limit == 5:
        assert done.returncode == 0, done.stdout + done.stderr
        assert [train[s]["nonfinite_skipped"] for s in range(1, 6)] == [0, 1, 1, 1, 1]
        assert all(math.isfinite(train[s]["loss"]) for s in (3, 4, 5))  # one bad step poisons nothing after it
        assert end["status"] == "completed" and end["nonfinite_skipped"] == 1
        assert "update skipped" in done.stdout
        state = json.loads((run / "checkpoints" / "checkpoint-4" / "state.json").read_text())
        assert state["nonfinite_skipped"] == 1
        more = run_cli("train", "--config", str(tmp_path / "job.yaml"), "--resume", "--set", "train.max_steps=6")
        assert more.returncode == 0, more.stdout + more.stderr
        assert rows(run, "train")[-1]["step"] == 6 and rows(run, "train")[-1]["nonfinite_skipped"] == 1
    else:
        assert done.returncode == 1, done.stdout + done.stderr
        assert end["status"] == "failed"
        message = rows(run, "error")[0]["message"]
        if policy == "stop":
            assert "train.on_nonfinite is stop" in message and end["step"] == 2
        else:
            assert "3 in a row" in message and end["step"] == 4 and end["nonfinite_skipped"] == 3
        assert not (run / "final").exists()


def test_grpo_skips_a_nonfinite_step(tmp_path, tiny_model):
    """The same skip under TRL's GRPOTrainer, whose training_step generates before it computes the loss."""
    (tmp_path / "varied.py").write_text(VARIED)
    method = {"type": "grpo", "group_size": 2, "max_new_tokens": 8,
              "rewards": [{"function": f"{tmp_path / 'varied.py'}:variety", "weight": 1.0}]}
    job = trl_job(tmp_path, tiny_model, method, train={"max_steps": 3, "on_nonfinite": "skip"})
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)),
                   env={"TRAINHUB_INJECT_NONFINITE": "2"})
    assert done.returncode == 0, done.stdout + done.stderr
    train = {r["step"]: r for r in rows(tmp_path / "run", "train")}
    assert train[2]["loss"] is None and [train[s]["nonfinite_skipped"] for s in (1, 2, 3)] == [0, 1, 1]
    assert math.isfinite(train[1]["loss"]) and math.isfinite(train[3]["loss"])


def test_eval_loss_is_the_same_per_token_mean_on_trl_and_native(tmp_path, tiny_model):
    """Issue 32 item 6: on identical weights both backends report the exact mean over the eval set's target
    tokens (not a mean of batch means). Eval rows of unequal length make the two quantities differ."""
    results = {}
    for backend in ("trl", "native"):
        (tmp_path / backend).mkdir()
        job = trl_job(tmp_path / backend, tiny_model, "sft", backend=backend,
                      data={"eval": str(DATA / "chat_eval.jsonl")},
                      train={"max_steps": 2, "eval_every": 2, "eval_batches": 3, "micro_batch_size": 3})
        done = train(tmp_path / backend, job)
        assert done.returncode == 0, done.stdout + done.stderr
        results[backend] = [(r["step"], r["eval_loss"], r["eval_tokens"])
                            for r in rows(tmp_path / backend / "run", "eval")]
    (step_t, loss_t, tokens_t), (step_n, loss_n, tokens_n) = results["trl"][-1], results["native"][-1]
    assert step_t == step_n == 2 and tokens_t == tokens_n
    assert loss_t == pytest.approx(loss_n, rel=1e-5)
