"""TRL's trainer for an unsloth job, inside Unsloth's environment (after `import unsloth`).

`build_trainer` gives the trainer for the job's method over trainhub's own data (the token ids and
loss masks every backend trains on, from trainhub.data), and the configuration asked for, so
that `changed_settings` can say what Unsloth changed: Unsloth rewrites TRL's configs as it
imports them (GRPO: loss_type, beta, epsilon_high, mask_truncated_completions, scale_rewards,
batch size against the group size), so every setting that matters is set here explicitly from the
job and then compared with what the trainer really holds.

pretrain and sft: SFTTrainer on a pre-tokenized dataset (input_ids, labels with -100 where no loss):
Unsloth's dataset preparation sees the labels column, tokenizes nothing and pads with
DataCollatorForSeq2Seq, so the loss masks are trainhub's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainhub.job import Job


def trainer_args(job: Job, run_dir: Path, precision: str, *, has_eval: bool, dry_run: bool = False,
                 resume_step: int = 0) -> dict[str, Any]:
    """The Trainer settings of the job, as TrainingArguments / SFTConfig names them."""
    t, o, s = job.train, job.optim, job.optim.schedule
    args: dict[str, Any] = {
        "output_dir": str(run_dir / "checkpoints"),
        "per_device_train_batch_size": t.micro_batch_size,
        "gradient_accumulation_steps": t.grad_accum,
        "learning_rate": o.lr, "adam_beta1": o.betas[0], "adam_beta2": o.betas[1], "adam_epsilon": o.eps,
        "weight_decay": o.weight_decay, "optim": "adamw_torch_fused", "warmup_steps": s.warmup_steps,
        "max_grad_norm": t.grad_clip if t.grad_clip is not None else 0.0,
        "logging_steps": t.log_every, "save_strategy": "steps" if t.save_every else "no",
        "save_total_limit": t.keep_last, "seed": job.seed, "data_seed": job.seed,
        "bf16": precision == "bf16", "fp16": precision == "fp16",
        "report_to": "none", "disable_tqdm": True, "include_num_input_tokens_seen": "non_padding",
        "gradient_checkpointing": False,  # Unsloth's own, set by get_peft_model / from_pretrained
    }
    if t.save_every:
        args["save_steps"] = t.save_every
    if s.decay == "cosine":
        args.update(lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": s.min_lr_ratio})
    else:
        args["lr_scheduler_type"] = {"linear": "linear", "constant": "constant_with_warmup"}[s.decay]
    if dry_run:
        args["max_steps"] = resume_step + 1
    elif t.max_steps is not None:
        args["max_steps"] = t.max_steps
    else:
        args["num_train_epochs"] = t.epochs
    if has_eval:
        args.update(per_device_eval_batch_size=t.micro_batch_size,
                    eval_strategy="steps" if t.eval_every else "no")
        if t.eval_every:
            args["eval_steps"] = t.eval_every
    return args


def sft_args(job: Job) -> dict[str, Any]:
    """SFTConfig's own settings for trainhub's pre-tokenized rows."""
    return {"max_length": job.data.max_length, "packing": False, "dataset_num_proc": 1}


def to_hf(examples):
    """trainhub's Examples (token ids, labels) as a datasets.Dataset of lists."""
    from datasets import Dataset

    return Dataset.from_dict({"input_ids": [x.tolist() for x in examples.input_ids],
                              "labels": [y.tolist() for y in examples.labels]})


def build_trainer(job: Job, model, tokenizer, run_dir: Path, precision: str, *, dry_run: bool,
                  resume: Path | None):
    """(trainer, the settings asked for, data counts for the start row)."""
    from trl import SFTConfig, SFTTrainer

    from trainhub.data.dataset import build_datasets

    data = build_datasets(job, tokenizer)
    resume_step = _global_step(resume) if resume is not None else 0
    wanted = {**trainer_args(job, run_dir, precision, has_eval=data.eval is not None, dry_run=dry_run,
                             resume_step=resume_step), **sft_args(job)}
    trainer = SFTTrainer(model=model, args=SFTConfig(**wanted), processing_class=tokenizer,
                         train_dataset=to_hf(data.train), eval_dataset=to_hf(data.eval) if data.eval else None)
    stats = {f"train_{k}": v for k, v in data.train.stats.items()}
    return trainer, wanted, stats, data.notes


# Settings TrainingArguments rewrites into another form of the same value ("none" -> []).
SAME_IN_ANOTHER_FORM = ("report_to",)


def changed_settings(wanted: dict[str, Any], actual) -> list[str]:
    """A note for every setting the trainer holds differently from what the job asked for."""
    notes = []
    for key, value in wanted.items():
        if key in SAME_IN_ANOTHER_FORM:
            continue
        got = getattr(actual, key, value)
        if hasattr(got, "value"):  # enums (lr_scheduler_type, save_strategy, ...)
            got = got.value
        if got != value and not (isinstance(value, float) and isinstance(got, float) and abs(got - value) < 1e-12):
            notes.append(f"unsloth changed {key} from {value!r} to {got!r}")
    return notes


def _global_step(checkpoint: Path) -> int:
    import json

    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"])
