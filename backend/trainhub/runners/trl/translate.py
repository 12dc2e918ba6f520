"""A job, translated into TRL's own config objects: which trainer, and every keyword of its config.

Pure Python (no TRL, no torch): the hub calls it for `trainhub plan` and `check`, the child to
build the config. Every value is set from the job, including each TRL default that has changed
between releases or that differs from trainhub's meaning, so nothing is inherited silently:

    bf16                 TRL >= 0.20 defaults it to True (when fp16 is off); set from train.precision
    gradient_checkpointing  TRL defaults True; set from train.grad_checkpointing
    logging_steps        TRL defaults 10; set from train.log_every
    learning_rate        each trainer has its own default; set from optim.lr (the optimizer and schedule
                         themselves are trainhub's, passed to the trainer: identical to native's)
    max_length           was max_seq_length (SFT) before TRL 0.20; set from data.max_length
    loss_type            GRPO's default moved bnpo -> dapo (0.22), SFT's nll -> chunked_nll (1.7) -> nll;
                         set from method
    use_vllm, vllm_mode  vllm_mode moved server -> colocate (1.0); generation runs in transformers
    disable_dropout      DPO/KTO/ORPO default True, which would also zero LoRA dropout; False here

Checked against TRL 1.15.0 and 1.16.0 (same field names). The GRPO algorithm table is
GRPO_TRL below (docs/backends.md shows the same table, generated from it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainhub.engine.precision import choose
from trainhub.job import GRPO_ALGORITHMS, Job

# method.type -> (module, config class, trainer class). ORPO lives in trl.experimental since TRL 0.26.
TRAINERS: dict[str, tuple[str, str, str]] = {
    "sft": ("trl", "SFTConfig", "SFTTrainer"),
    "dpo": ("trl", "DPOConfig", "DPOTrainer"),
    "orpo": ("trl.experimental.orpo", "ORPOConfig", "ORPOTrainer"),
    "kto": ("trl", "KTOConfig", "KTOTrainer"),
    "grpo": ("trl", "GRPOConfig", "GRPOTrainer"),
}

# trainhub's neutral GRPO settings (job.GRPO_ALGORITHMS) -> TRL's GRPOConfig keywords.
LOSS_TYPE = {"sequence_mean": "grpo", "token_mean": "dapo", "constant": "dr_grpo"}
"""TRL loss_type: grpo = per-sequence mean then mean over sequences; dapo = mean over all completion
tokens of the accumulated step; dr_grpo = sum over tokens / (completions x max_completion_length)."""
IMPORTANCE_LEVEL = {"token": "token", "sequence": "sequence"}
SCALE_REWARDS = {"group": "group", "batch": "batch", "none": "none"}


def grpo_knobs(settings: dict[str, Any]) -> dict[str, Any]:
    """GRPOConfig keywords for resolved GRPO settings (GRPO.resolved())."""
    return {
        "loss_type": LOSS_TYPE[settings["loss_aggregation"]],
        "importance_sampling_level": IMPORTANCE_LEVEL[settings["importance_ratio"]],
        "epsilon": settings["clip_low"],
        "epsilon_high": settings["clip_high"],
        "scale_rewards": SCALE_REWARDS[settings["reward_scaling"]],
        "mask_truncated_completions": settings["mask_truncated"],
    }


GRPO_TRL: dict[str, dict[str, Any]] = {name: grpo_knobs(s) for name, s in GRPO_ALGORITHMS.items()}
"""The algorithm -> TRL knobs table (before the job's own overrides)."""


def algorithm_table() -> str:
    """GRPO_TRL as a markdown table (docs/backends.md holds this text; a test keeps them equal)."""
    keys = list(next(iter(GRPO_TRL.values())))
    lines = ["| algorithm | " + " | ".join(f"`{k}`" for k in keys) + " |", "| --- |" + " --- |" * len(keys)]
    for name, knobs in GRPO_TRL.items():
        lines.append(f"| `{name}` | " + " | ".join(f"`{knobs[k]}`" for k in keys) + " |")
    return "\n".join(lines)


DATALOADER_WORKERS = 2
"""Batch-preparing processes of an SFT run on a GPU (trl and unsloth backends)."""


def training_args(job: Job, run_dir: Path, *, cuda: bool, bf16_ok: bool, dry_run: bool = False,
                  resume_step: int = 0, total_steps: int | None = None) -> dict[str, Any]:
    """The transformers TrainingArguments keywords every TRL config shares. `total_steps`: the run's
    length in optimizer steps when known (the child counts it from the data for train.epochs)."""
    tc, opt = job.train, job.optim
    prec = choose(job.train.precision.type, cuda=cuda, bf16_ok=bf16_ok)  # as native decides (the child's notes say it)
    max_steps = resume_step + 1 if dry_run else (tc.max_steps or total_steps or -1)
    args: dict[str, Any] = {
        "output_dir": str(Path(run_dir) / "checkpoints"),
        "seed": job.seed,
        "data_seed": job.seed,
        "per_device_train_batch_size": tc.micro_batch_size,
        "per_device_eval_batch_size": tc.micro_batch_size,
        "gradient_accumulation_steps": tc.grad_accum,
        "max_steps": max_steps,
        "num_train_epochs": float(tc.epochs) if tc.epochs is not None else 1.0,
        # the optimizer and schedule are trainhub's own (runners/trl/trainer.py passes them to the trainer), so
        # a job steps the same under native and trl; learning_rate is what they start from
        "learning_rate": opt.lr,
        # no clipping: an infinite bound still computes (and logs) the norm, as native does
        "max_grad_norm": tc.grad_clip if tc.grad_clip is not None else float("inf"),
        "bf16": prec == "bf16",
        "fp16": prec == "fp16",
        "use_cpu": not cuda,
        "gradient_checkpointing": tc.grad_checkpointing == "full",
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "logging_strategy": "steps",
        "logging_steps": tc.log_every,
        "logging_first_step": False,
        # a non-finite loss is logged as it is (and stops the run under train.on_nonfinite: stop), not replaced
        # by the running average; the filter's check also made the host wait for the GPU inside every step
        "logging_nan_inf_filter": False,
        "save_strategy": "steps" if tc.save_every and not dry_run else "no",
        "eval_strategy": "steps" if tc.eval_every and not dry_run else "no",
        # TRL's trainers count non-padding tokens themselves (num_tokens; ORPO's: trainhub's collator); the
        # Trainer's own count would only warn each micro-batch where batches hold no input_ids (GRPO)
        "include_num_input_tokens_seen": "no",
        "dataloader_drop_last": True,
        "report_to": "none",
        "disable_tqdm": True,
    }
    if tc.save_every and not dry_run:
        args.update(save_steps=tc.save_every, save_total_limit=tc.keep_last)
    if tc.eval_every and not dry_run:
        args["eval_steps"] = tc.eval_every
    if not job.data.shuffle:
        args["train_sampling_strategy"] = "sequential"
    if cuda and job.method.type == "sft":
        # batches are fetched and padded in DATALOADER_WORKERS processes while the GPU runs the step before:
        # in the main process that host time left the GPU idle after every logged step's sync (~4 ms of a
        # 120 ms LoRA step on an H100; research/results/unsloth.md). Tokens are counted in the main process
        # (count_trained_tokens), so nothing a row reports is lost in a worker
        args.update(dataloader_num_workers=DATALOADER_WORKERS, dataloader_persistent_workers=True)
    return args


def method_args(job: Job) -> dict[str, Any]:
    """The keywords of the method's own TRL config."""
    m, length = job.method, job.data.max_length
    if m.type == "sft":
        # trainhub tokenizes and masks (data layer): TRL gets input_ids + labels and uses the labels as they are
        return {"max_length": length, "packing": False, "padding_free": False, "completion_only_loss": None,
                "assistant_only_loss": False, "loss_type": "nll"}
    if m.type == "dpo":
        return {"beta": m.beta, "loss_type": [m.loss], "max_length": length, "truncation_mode": "keep_start",
                "label_smoothing": 0.0, "precompute_ref_log_probs": False, "disable_dropout": False}
    if m.type == "orpo":
        # the child gives ORPO its own pair collator wrapped to count tokens; keep the pair columns for it
        return {"beta": m.beta, "max_length": length, "disable_dropout": False, "remove_unused_columns": False}
    if m.type == "kto":
        return {"beta": m.beta, "desirable_weight": m.desirable_weight, "undesirable_weight": m.undesirable_weight,
                "max_length": length, "loss_type": "kto", "precompute_ref_log_probs": False, "disable_dropout": False}
    if m.type == "grpo":
        tc = job.train
        return {
            "num_generations": m.group_size,
            "max_completion_length": m.max_new_tokens,
            "temperature": m.temperature,
            "top_p": m.top_p,
            "top_k": 0,
            "beta": m.kl_beta,
            "num_iterations": 1,
            "steps_per_generation": tc.grad_accum,
            "reward_weights": [r.weight for r in m.rewards],
            "multi_objective_aggregation": "sum_then_normalize",
            "use_vllm": False,
            "vllm_mode": "colocate",
            "disable_dropout": False,
            "shuffle_dataset": job.data.shuffle,
            "remove_unused_columns": False,
            "log_completions": False,
            **grpo_knobs(m.resolved()),
        }
    raise ValueError(f"trl cannot train method {m.type}")


def translate(job: Job, run_dir: Path, *, cuda: bool, bf16_ok: bool, dry_run: bool = False,
              resume_step: int = 0, total_steps: int | None = None) -> dict[str, Any]:
    """{"module", "config", "trainer", "args"}: the TRL classes to use and the config's keywords."""
    module, config, trainer = TRAINERS[job.method.type]
    args = {**training_args(job, run_dir, cuda=cuda, bf16_ok=bf16_ok, dry_run=dry_run, resume_step=resume_step,
                            total_steps=total_steps),
            **method_args(job)}
    return {"module": module, "config": config, "trainer": trainer, "args": args}
