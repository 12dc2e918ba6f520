"""The job -> TRL translation (runners/trl/translate.py): the exact config each method and each GRPO
algorithm produces, and the algorithm table in docs/backends.md. No TRL needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT
from trainhub.jobfile import validate
from trainhub.runners.trl.translate import GRPO_TRL, algorithm_table, method_args, training_args, translate

RUN = Path("/runs/x")
REWARDS = [{"function": "trainhub.rewards:exact_match", "weight": 1.0},
           {"function": "trainhub.rewards:answer_format", "weight": 0.25}]


def job(method, fmt, **train):
    return validate({"name": "x", "backend": "trl", "model": {"path": "/m"}, "method": method,
                     "data": {"train": "/d.jsonl", "format": fmt, "max_length": 128, "overlong": "drop"},
                     "optim": {"lr": 2e-4, "betas": [0.9, 0.99], "weight_decay": 0.1},
                     "train": {"micro_batch_size": 4, "grad_accum": 2, "max_steps": 10, "on_nonfinite": "stop",
                               **train}})


COMMON_CPU = {
    "output_dir": "/runs/x/checkpoints", "seed": 0, "data_seed": 0, "per_device_train_batch_size": 4,
    "per_device_eval_batch_size": 4, "gradient_accumulation_steps": 2, "max_steps": 10, "num_train_epochs": 1.0,
    "learning_rate": 2e-4, "max_grad_norm": 1.0, "bf16": False, "fp16": False, "use_cpu": True,
    "gradient_checkpointing": False, "gradient_checkpointing_kwargs": {"use_reentrant": False},
    "logging_strategy": "steps", "logging_steps": 1, "logging_first_step": False, "logging_nan_inf_filter": False,
    "save_strategy": "no",
    "eval_strategy": "no", "include_num_input_tokens_seen": "no", "dataloader_drop_last": True,
    "report_to": "none", "disable_tqdm": True,
}


def test_common_args_cpu():
    assert training_args(job("sft", "messages"), RUN, cuda=False, bf16_ok=False) == COMMON_CPU


def test_common_args_gpu_and_cadence():
    j = job("sft", "messages", precision="auto", save_every=5, keep_last=3, grad_clip=None, log_every=2,
            grad_checkpointing=True)
    args = training_args(j, RUN, cuda=True, bf16_ok=True)
    assert (args["bf16"], args["fp16"], args["use_cpu"]) == (True, False, False)  # TRL's bf16 default, set
    assert (args["save_strategy"], args["save_steps"], args["save_total_limit"]) == ("steps", 5, 3)
    assert args["max_grad_norm"] == float("inf") and args["logging_steps"] == 2
    assert args["gradient_checkpointing"] is True
    assert training_args(j, RUN, cuda=True, bf16_ok=False)["bf16"] is False  # auto without bf16: fp32
    fp16 = job("sft", "messages", precision="fp16")
    assert training_args(fp16, RUN, cuda=True, bf16_ok=True)["fp16"] is True


def test_sft_batches_are_prepared_in_workers_on_a_gpu():
    """On a GPU, SFT batches are padded in persistent worker processes; elsewhere (CPU, or a method whose
    collator counts tokens or whose batches are prompts) in the main process."""
    gpu = training_args(job("sft", "messages"), RUN, cuda=True, bf16_ok=True)
    assert (gpu["dataloader_num_workers"], gpu["dataloader_persistent_workers"]) == (2, True)
    assert "dataloader_num_workers" not in training_args(job("sft", "messages"), RUN, cuda=False, bf16_ok=False)
    grpo = {"type": "grpo", "rewards": REWARDS}
    for method, fmt in (("dpo", "preference"), ("orpo", "preference"), (grpo, "prompt")):
        assert "dataloader_num_workers" not in training_args(job(method, fmt), RUN, cuda=True, bf16_ok=True)


def test_dry_run_is_one_step_without_saving():
    j = job("sft", "messages", save_every=5)
    args = training_args(j, RUN, cuda=False, bf16_ok=False, dry_run=True, resume_step=6)
    assert (args["max_steps"], args["save_strategy"]) == (7, "no") and "save_steps" not in args


def test_epochs_use_the_counted_steps_and_no_shuffle_is_sequential():
    j = validate({**job("sft", "messages").model_dump(mode="json"),
                  "train": {"micro_batch_size": 4, "epochs": 2, "on_nonfinite": "stop"},
                  "data": {"train": "/d.jsonl", "format": "messages", "shuffle": False}})
    args = training_args(j, RUN, cuda=False, bf16_ok=False, total_steps=30)
    assert (args["max_steps"], args["num_train_epochs"], args["train_sampling_strategy"]) == (30, 2.0, "sequential")


@pytest.mark.parametrize(("method", "fmt", "expected"), [
    ("sft", "messages", {"max_length": 128, "packing": False, "padding_free": False, "completion_only_loss": None,
                         "assistant_only_loss": False, "loss_type": "nll"}),
    ({"type": "dpo", "beta": 0.3, "loss": "ipo"}, "preference",
     {"beta": 0.3, "loss_type": ["ipo"], "max_length": 128, "truncation_mode": "keep_start", "label_smoothing": 0.0,
      "precompute_ref_log_probs": False, "disable_dropout": False}),
    ({"type": "orpo", "beta": 0.05}, "preference", {"beta": 0.05, "max_length": 128, "disable_dropout": False,
                                            "remove_unused_columns": False}),
    ({"type": "kto", "beta": 0.2, "desirable_weight": 1.0, "undesirable_weight": 1.33}, "preference",
     {"beta": 0.2, "desirable_weight": 1.0, "undesirable_weight": 1.33, "max_length": 128, "loss_type": "kto",
      "precompute_ref_log_probs": False, "disable_dropout": False}),
])
def test_method_args(method, fmt, expected):
    assert method_args(job(method, fmt)) == expected


GRPO_COMMON = {
    "num_generations": 4, "max_completion_length": 32, "temperature": 0.7, "top_p": 0.9, "top_k": 0, "beta": 0.0,
    "num_iterations": 1, "steps_per_generation": 2, "reward_weights": [1.0, 0.25],
    "multi_objective_aggregation": "sum_then_normalize", "use_vllm": False, "vllm_mode": "colocate",
    "disable_dropout": False, "shuffle_dataset": True, "remove_unused_columns": False, "log_completions": False,
}
ALGORITHMS = {
    "grpo": {"loss_type": "grpo", "importance_sampling_level": "token", "epsilon": 0.2, "epsilon_high": 0.2,
             "scale_rewards": "group", "mask_truncated_completions": False},
    "dr_grpo": {"loss_type": "dr_grpo", "importance_sampling_level": "token", "epsilon": 0.2, "epsilon_high": 0.2,
                "scale_rewards": "none", "mask_truncated_completions": False},
    "dapo": {"loss_type": "dapo", "importance_sampling_level": "token", "epsilon": 0.2, "epsilon_high": 0.28,
             "scale_rewards": "group", "mask_truncated_completions": True},
    "gspo": {"loss_type": "grpo", "importance_sampling_level": "sequence", "epsilon": 3e-4, "epsilon_high": 4e-4,
             "scale_rewards": "group", "mask_truncated_completions": False},
}


def grpo(algorithm, **over):
    return {"type": "grpo", "algorithm": algorithm, "group_size": 4, "max_new_tokens": 32, "temperature": 0.7,
            "top_p": 0.9, "rewards": REWARDS, **over}


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_grpo_algorithm_args(algorithm):
    assert GRPO_TRL[algorithm] == ALGORITHMS[algorithm]
    assert method_args(job(grpo(algorithm), "prompt")) == {**GRPO_COMMON, **ALGORITHMS[algorithm]}


def test_grpo_job_values_override_the_algorithm():
    args = method_args(job(grpo("dapo", clip_high=0.3, reward_scaling="batch", mask_truncated=False,
                                loss_aggregation="constant", kl_beta=0.04), "prompt"))
    assert (args["epsilon_high"], args["scale_rewards"], args["mask_truncated_completions"]) == (0.3, "batch", False)
    assert (args["loss_type"], args["beta"], args["epsilon"]) == ("dr_grpo", 0.04, 0.2)


def test_translate_names_the_trainer():
    assert {m: translate(job(m, f), RUN, cuda=False, bf16_ok=False)["trainer"] for m, f in
            [("sft", "messages"), ("dpo", "preference"), ("orpo", "preference"), ("kto", "preference"),
             (grpo("grpo")["type"], "prompt")] if m != "grpo"} == {
        "sft": "SFTTrainer", "dpo": "DPOTrainer", "orpo": "ORPOTrainer", "kto": "KTOTrainer"}
    spec = translate(job(grpo("gspo"), "prompt"), RUN, cuda=False, bf16_ok=False)
    assert (spec["module"], spec["config"], spec["trainer"]) == ("trl", "GRPOConfig", "GRPOTrainer")
    assert translate(job("orpo", "preference"), RUN, cuda=False, bf16_ok=False)["module"] == "trl.experimental.orpo"


def test_docs_hold_the_algorithm_table():
    assert algorithm_table() in (ROOT / "docs" / "backends.md").read_text()


@pytest.mark.parametrize("name", ["sft_trl.yaml", "dpo_trl.yaml", "grpo_trl.yaml"])
def test_shipped_trl_examples_pass_check(name):
    from tests.unit.test_configs import load_config
    from trainhub.host import Host
    from trainhub.runners.trl.runner import TrlRunner

    job = load_config(ROOT / "config" / name)
    runner = TrlRunner()
    problems = [p for p in runner.check(job, Host()) if p.where != "backend"]  # backend: trl not installed
    assert problems == [] and job.backend.type == "trl"
    assert translate(job, RUN, cuda=True, bf16_ok=True)["args"]["bf16"] is True


def test_check_refuses_what_trl_cannot_do():
    from trainhub.host import Host
    from trainhub.runners.trl.runner import TrlRunner

    j = validate({**job(grpo("dapo", dynamic_sampling=True), "prompt").model_dump(mode="json"),
                  "data": {"train": "/d.jsonl", "format": "prompt", "overlong": "truncate", "eval_fraction": 0.1},
                  "train": {"micro_batch_size": 4, "max_steps": 2}})
    where = {p.where for p in TrlRunner().check(j, Host())}
    assert {"method.dynamic_sampling", "data.overlong", "data.eval"} <= where
    assert "train.on_nonfinite" not in where  # skip (the default) works under the Trainer (hf_nonfinite.py)
    assert "data.packing" in {p.where for p in TrlRunner().check(
        validate({**job("sft", "messages").model_dump(mode="json"),
                  "data": {"train": "/d.jsonl", "format": "messages", "packing": True}}), Host())}


@pytest.mark.parametrize("backend", ["native", "trl"])
def test_trainhub_model_backends_refuse_the_same_model_settings(backend):
    """native and trl both train trainhub's own model: flash_attention_2 without a GPU, and fp16 autocast over
    bfloat16 weights, are refused by both, naming the key."""
    from trainhub.host import Host
    from trainhub.runners import RUNNERS

    base = job("sft", "messages").model_dump(mode="json")
    flash = validate({**base, "model": {**base["model"], "attention": "flash_attention_2"}})
    half = validate({**base, "model": {**base["model"], "dtype": "bfloat16"},
                     "train": {**base["train"], "precision": "fp16"}})
    runner = RUNNERS[backend]
    assert "model.attention" in {p.where for p in runner.check(flash, Host(gpus=(), cpu="x86_64", cores=2))}
    [problem] = [p for p in runner.check(half, Host()) if p.where == "train.precision"]
    assert "two half formats" in problem.message
