"""The job -> LLaMA-Factory translation, field by field for each method, and what check() refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT
from trainhub.host import Host
from trainhub.job import Job
from trainhub.runners.llamafactory.runner import LlamaFactoryRunner, write_data
from trainhub.runners.llamafactory.translate import translate

CHAT = str(ROOT / "config/data/chat.jsonl")
CHAT_EVAL = str(ROOT / "config/data/chat_eval.jsonl")


def job(**over) -> Job:
    raw = {"name": "t", "output_dir": "/tmp/t", "seed": 3, "backend": "llamafactory", "model": {"path": "org/tiny"},
           "method": "sft", "adapter": {"type": "lora", "rank": 4, "alpha": 8, "dropout": 0.05,
                                        "targets": ["q_proj", "v_proj"]},
           "data": {"train": CHAT, "format": "messages", "max_length": 96},
           "optim": {"lr": 2e-4, "betas": [0.9, 0.99], "eps": 1e-7, "weight_decay": 0.01},
           "schedule": {"warmup_steps": 5, "decay": "cosine", "min_lr_ratio": 0.2},
           "train": {"micro_batch_size": 2, "grad_accum": 4, "max_steps": 7, "grad_clip": 0.5, "precision": "bf16",
                     "log_every": 2, "save_every": 3, "keep_last": 1, "on_nonfinite": "stop"}}
    raw.update(over)
    return Job.model_validate(raw)


def cfg(j: Job, **kw) -> dict:
    return translate(j, Path("/run"), Path("/run/data/llamafactory"), has_eval=j.data.has_eval, **kw)


def test_sft_lora_every_field():
    assert cfg(job()) == {
        "model_name_or_path": "org/tiny", "trust_remote_code": False, "flash_attn": "sdpa", "stage": "sft",
        "do_train": True, "finetuning_type": "lora", "lora_rank": 4, "lora_alpha": 8.0, "lora_dropout": 0.05,
        "lora_target": "q_proj,v_proj", "dataset": "trainhub_train", "dataset_dir": "/run/data/llamafactory",
        "cutoff_len": 96, "overwrite_cache": True, "preprocessing_num_workers": 1, "train_on_prompt": False,
        "output_dir": "/run/checkpoints", "overwrite_output_dir": True, "logging_steps": 2,
        "save_strategy": "steps", "save_total_limit": 1, "report_to": "none", "disable_tqdm": True,
        "plot_loss": False, "include_num_input_tokens_seen": "non_padding", "seed": 3, "data_seed": 3,
        "per_device_train_batch_size": 2, "gradient_accumulation_steps": 4, "learning_rate": 2e-4,
        "adam_beta1": 0.9, "adam_beta2": 0.99, "adam_epsilon": 1e-7, "weight_decay": 0.01, "optim": "adamw_torch",
        "warmup_steps": 5, "max_grad_norm": 0.5, "disable_gradient_checkpointing": True, "save_steps": 3,
        "lr_scheduler_type": "cosine_with_min_lr", "lr_scheduler_kwargs": {"min_lr_rate": 0.2}, "max_steps": 7,
        "bf16": True, "fp16": False}


def test_pretrain_full_and_the_other_knobs():
    j = job(method="pretrain", adapter="full", data={"train": CHAT, "eval": CHAT_EVAL, "format": "text",
                                                        "max_length": 64, "shuffle": False},
            optim={"lr": 1e-3}, schedule={"decay": "constant"},
            train={"micro_batch_size": 8, "epochs": 1.5, "grad_clip": None, "precision": "fp16",
                   "grad_checkpointing": True, "eval_every": 4, "on_nonfinite": "stop"},
            model={"path": "org/tiny", "attention": "eager"})
    c = cfg(j)
    assert (c["stage"], c["finetuning_type"], c["flash_attn"]) == ("pt", "full", "disabled")
    assert not {"lora_rank", "lora_target", "train_on_prompt", "max_steps", "save_steps"} & set(c)
    assert (c["num_train_epochs"], c["lr_scheduler_type"], c["max_grad_norm"]) == (1.5, "constant_with_warmup", 0.0)
    assert (c["fp16"], c["bf16"], c["disable_gradient_checkpointing"], c["disable_shuffling"]) == (True, False,
                                                                                                  False, True)
    assert (c["eval_dataset"], c["eval_strategy"], c["eval_steps"], c["per_device_eval_batch_size"]) == (
        "trainhub_eval", "steps", 4, 8)
    assert c["save_strategy"] == "no"


def test_sft_template_packing_and_train_on_all():
    c = cfg(job(method={"type": "sft", "train_on": "all"},
                data={"train": CHAT, "format": "messages", "template": "qwen2", "packing": True},
                adapter={"type": "lora", "targets": "all-linear"}))
    assert (c["template"], c["train_on_prompt"], c["packing"], c["neat_packing"], c["lora_target"]) == (
        "qwen", True, True, True, "all")
    assert "template" not in cfg(job())  # null: LLaMA-Factory parses the tokenizer's own chat template


@pytest.mark.parametrize("method,expected", [
    ({"type": "dpo", "beta": 0.3, "loss": "ipo"}, {"stage": "dpo", "pref_beta": 0.3, "pref_loss": "ipo"}),
    ({"type": "orpo", "beta": 0.2}, {"stage": "dpo", "pref_beta": 0.2, "pref_loss": "orpo"}),
    ({"type": "kto", "beta": 0.4, "desirable_weight": 1.5, "undesirable_weight": 0.5},
     {"stage": "kto", "pref_beta": 0.4, "kto_chosen_weight": 1.5, "kto_rejected_weight": 0.5}),
])
def test_preference_methods(method, expected, tmp_path):
    pref = tmp_path / "pref.jsonl"
    pref.write_text(json.dumps({"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go."}) + "\n")
    c = cfg(job(method=method, data={"train": str(pref), "format": "preference"}))
    assert {k: c[k] for k in expected} == expected
    assert "train_on_prompt" not in c


def test_dry_run_is_one_step_past_the_resumed_step(tmp_path):
    ckpt = tmp_path / "checkpoint-4"
    ckpt.mkdir()
    (ckpt / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    assert cfg(job(), dry_run=True)["max_steps"] == 1
    with_eval = job(data={"train": CHAT, "eval": CHAT_EVAL})
    assert "eval_dataset" in cfg(with_eval) and "eval_dataset" not in cfg(with_eval, dry_run=True)
    c = cfg(job(), dry_run=True, resume=ckpt)
    assert (c["max_steps"], c["resume_from_checkpoint"]) == (5, str(ckpt))


def test_kto_data_splits_each_pair_into_two_labelled_examples(tmp_path):
    pref = tmp_path / "pref.jsonl"
    pref.write_text(json.dumps({"prompt": "Hi?", "chosen": "Hello.", "rejected": "Go."}) + "\n")
    j = job(method="kto", data={"train": str(pref), "format": "preference"})
    write_data(j, tmp_path / "lf")
    rows = [json.loads(line) for line in (tmp_path / "lf" / "trainhub_train.jsonl").read_text().splitlines()]
    assert [(r["messages"][-1]["content"], r["label"]) for r in rows] == [("Hello.", True), ("Go.", False)]
    assert json.loads((tmp_path / "lf" / "stats.json").read_text())["train_examples"] == 2


def test_sft_data_is_the_loaders_records(tmp_path):
    j = job(data={"train": CHAT, "eval": CHAT_EVAL, "format": "messages"})
    assert write_data(j, tmp_path / "lf")
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert set(info) == {"trainhub_train", "trainhub_eval"}
    assert Path(info["trainhub_train"]["file_name"]).is_absolute()
    n = len((ROOT / "config/data/chat.jsonl").read_text().splitlines())
    assert len(Path(info["trainhub_train"]["file_name"]).read_text().splitlines()) == n


def problems(j: Job) -> dict[str, str]:
    return {p.where: p.message for p in LlamaFactoryRunner().check(j, Host())}


def test_check_refuses_what_it_cannot_do(tmp_path, monkeypatch):
    monkeypatch.setenv("TRAINHUB_ENVS", str(tmp_path / "envs"))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "2+2?", "answer": "4"}) + "\n")
    grpo = job(method={"type": "grpo", "group_size": 2, "rewards": [{"function": "trainhub.rewards:exact_match"}]},
               data={"train": str(prompts), "format": "prompt"})
    assert "--backend trl" in problems(grpo)["method.type"]
    assert "trainhub env setup llamafactory" in problems(job())["backend"]  # the exact command
    init = {"init": {"hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 4}}
    assert "native" in problems(job(model=init))["model.init"]
    assert "plain" in problems(job(data={"train": CHAT, "template": "plain"}))["data.template"]
    skip = job(train={"max_steps": 2})
    assert "on_nonfinite: stop" in problems(skip)["train.on_nonfinite"]
    linear = job(schedule={"decay": "linear", "min_lr_ratio": 0.1})
    assert "min_lr_ratio 0" in problems(linear)["schedule.min_lr_ratio"]
    assert "eval_batches" in problems(job(data={"train": CHAT, "eval": CHAT_EVAL},
                                          train={"max_steps": 2, "eval_batches": 1, "on_nonfinite": "stop"}))[
        "train.eval_batches"]
    assert set(problems(job())) == {"backend"}


def test_a_bad_record_stops_prepare_with_its_line(tmp_path):
    from trainhub.jobfile import JobError

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    with pytest.raises(JobError, match="bad.jsonl:1"):
        LlamaFactoryRunner().prepare(job(data={"train": str(bad), "format": "messages"}), tmp_path / "run")
