"""TRL's trainer for an unsloth job: the trl backend's translation, with Unsloth's few differences.

The trainer configuration is the trl backend's (trainhub.trl_child.translate: every TRL setting
set from the job, the GRPO algorithm table included), and so are the data (trl_child.data), the
reward functions and the optimizer and schedule (trl_child.train): a job means the same thing on
both backends. What differs under Unsloth, set in `unsloth_spec`:

    gradient_checkpointing   False for the Trainer: Unsloth's own ("unsloth", offloaded) is set by
                             from_pretrained / get_peft_model when train.grad_checkpointing asks
    bf16 / fp16              the 16-bit type the weights were loaded in (fp32 is not offered)

Unsloth rewrites TRL's config classes as it imports them: GRPO's loss_type (default dapo, or bnpo
before TRL 0.22), beta (0.001 unless dapo / dr_grpo), epsilon_high (0.28 forced with an explicit
dapo when unset), mask_truncated_completions, scale_rewards (off for dr_grpo), the batch size
against the group size; SFT's max_length. Every one of these is set explicitly from the job (the
translation leaves none unset), and `changed_settings` compares the config the trainer really
holds with the one asked for: each difference is a note in the start row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainhub.job import Job

METHODS = ("sft", "dpo", "orpo", "kto", "grpo")
"""Methods the unsloth backend trains (the GPU tests run each)."""

# Settings TrainingArguments stores in another form of the same value ("none" -> []).
SAME_IN_ANOTHER_FORM = ("report_to",)


def unsloth_spec(job: Job, run_dir: Path, precision: str, *, dry_run: bool = False, resume_step: int = 0,
                 total_steps: int | None = None) -> dict[str, Any]:
    """{"module", "config", "trainer", "args"}: the trl backend's translation with Unsloth's differences.
    `precision`: bf16 or fp16, the dtype the weights are loaded in."""
    from trainhub.trl_child.translate import translate

    spec = translate(job, run_dir, cuda=True, bf16_ok=precision == "bf16", dry_run=dry_run,
                     resume_step=resume_step, total_steps=total_steps)
    args = spec["args"]
    args.pop("gradient_checkpointing_kwargs", None)
    args.update(gradient_checkpointing=False, bf16=precision == "bf16", fp16=precision == "fp16")
    return spec


def build_trainer(job: Job, model, tokenizer, run_dir: Path, precision: str, *, dry_run: bool,
                  resume: Path | None):
    """(trainer, the config asked for, data, tokens_fn) for the job's method. The trainer gets no callback
    yet; tokens_fn, when not None, counts the tokens the rows report (ORPO's pair collator)."""
    import importlib

    from trainhub.engine.device import pick_device
    from trainhub.engine.schedule import total_steps
    from trainhub.resume import read_state
    from trainhub.trl_child.data import build
    from trainhub.trl_child.train import (
        PROBE_ROWS,
        load_rewards,
        method_collator,
        optimizer_and_schedule,
    )

    data = build(job, tokenizer)
    rewards = load_rewards(job, data.train.select(range(min(PROBE_ROWS, len(data.train)))).to_list()) \
        if job.method.type == "grpo" else []
    resume_step = read_state(resume)[0]["step"] if resume is not None else 0
    total = total_steps(job, len(data.train))
    spec = unsloth_spec(job, run_dir, precision, dry_run=dry_run, resume_step=resume_step, total_steps=total)
    module = importlib.import_module(spec["module"])  # after `import unsloth`: Unsloth's patched classes
    config = getattr(module, spec["config"])(**spec["args"])
    kwargs = {"model": model, "args": config, "train_dataset": data.train, "eval_dataset": data.eval,
              "processing_class": tokenizer, "optimizers": optimizer_and_schedule(job, model, pick_device(), total)}
    if job.method.type == "grpo":
        kwargs["reward_funcs"] = rewards
    # SFT: trainhub's own padding of its pre-tokenized rows, not the DataCollatorForSeq2Seq Unsloth would pick
    # (the tokenizer's pad(): most of a step's host time); ORPO: TRL's pair collator, counting tokens
    collator, tokens_fn = method_collator(job, tokenizer)
    if collator is not None:
        kwargs["data_collator"] = collator
    trainer = getattr(module, spec["trainer"])(**kwargs)
    return trainer, spec["args"], data, tokens_fn


def changed_settings(wanted: dict[str, Any], actual) -> list[str]:
    """A note for every setting the trainer holds differently from what the job asked for."""
    notes = []
    for key, value in wanted.items():
        if key in SAME_IN_ANOTHER_FORM:
            continue
        got = getattr(actual, key, value)
        if hasattr(got, "value"):  # enums (save_strategy, optim, ...)
            got = got.value
        if got != value and not (isinstance(value, float) and isinstance(got, float) and abs(got - value) < 1e-12):
            notes.append(f"unsloth changed {key} from {value!r} to {got!r}")
    return notes
