"""A job, translated into Unsloth's two calls and the TRL trainer it patches: plain dicts, tested without a GPU.

    job                         FastLanguageModel.from_pretrained        get_peft_model
    model.path                  model_name (use_exact_model_name=True)
    data.max_length             max_seq_length (GRPO: + method.max_new_tokens, the longest
                                prompt + completion the model sees)      max_seq_length
    train.precision             dtype (bf16 -> bfloat16, fp16 -> float16, auto -> the child's pick:
                                engine/precision.py, bf16 where the GPU has it, else fp16)
    adapter lora                load_in_16bit=True                       r, lora_alpha, lora_dropout,
    adapter qlora               load_in_4bit=True (NF4, bitsandbytes)    target_modules, bias="none"
    adapter full                full_finetuning=True                     (not called)
    train.grad_checkpointing    full: use_gradient_checkpointing="unsloth" (else False), both calls
    seed                        random_state                             random_state

The trainer configuration is the trl backend's (trainhub.runners.trl.translate: every TRL setting
set from the job, the GRPO algorithm table included), and so are the data (runners/trl/data.py), the
reward functions and the optimizer and schedule (runners/trl/trainer.py): a job means the same thing
on both backends. What differs under Unsloth, set in `unsloth_spec`:

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

from trainhub.engine.precision import DTYPES
from trainhub.job import Job
from trainhub.job.sizes import longest_sequence

# Settings TrainingArguments stores in another form of the same value ("none" -> []).
SAME_IN_ANOTHER_FORM = ("report_to",)


def gradient_checkpointing(job: Job) -> str | bool:
    """Unsloth's own offloaded checkpointing when the job asks for checkpointing, else none."""
    return "unsloth" if job.train.grad_checkpointing == "full" else False


def max_seq_length(job: Job) -> int:
    """The longest sequence the model sees (job/sizes.py: GRPO's prompt + completion). Unsloth's forward
    cuts input_ids to max_seq_length without a word (unsloth 2026.10.9, models/llama.py), so with the
    prompt bound alone a long completion lost its tail, the log-probability gather indexed past the
    logits, and the GRPO benchmark ended in a device-side assert on the GPU machine (2026-11-22)."""
    return longest_sequence(job)


def load_args(job: Job) -> dict:
    """Keyword arguments of FastLanguageModel.from_pretrained (dtype as a name; the child maps it to torch)."""
    kind = job.adapter.type
    return {
        "model_name": job.model.path,
        "max_seq_length": max_seq_length(job),
        "dtype": None if job.train.precision.type == "auto" else DTYPES[job.train.precision.type],
        "load_in_4bit": kind == "qlora",
        "load_in_8bit": False,
        "load_in_16bit": kind == "lora",
        "full_finetuning": kind == "full",
        "use_gradient_checkpointing": gradient_checkpointing(job),
        "trust_remote_code": job.model.trust_remote_code,
        "use_exact_model_name": True,  # never swap the named model for a pre-quantized unsloth/* mirror
        "random_state": job.seed,
    }


def peft_args(job: Job) -> dict | None:
    """Keyword arguments of FastLanguageModel.get_peft_model, or None for a full fine-tune."""
    adapter = job.adapter
    if adapter.type == "full":
        return None
    return {
        "r": adapter.rank,
        "lora_alpha": adapter.alpha,
        "lora_dropout": adapter.dropout,
        "target_modules": adapter.targets,  # "all-linear" is understood by Unsloth (and peft) as is
        "bias": "none",
        "use_gradient_checkpointing": gradient_checkpointing(job),
        "random_state": job.seed,
        "use_rslora": False,
        "max_seq_length": max_seq_length(job),
    }


def notes_for(job: Job) -> list[str]:
    """Plain statements about how Unsloth reads this job, for the start row."""
    notes = []
    asked = job.train.precision.type
    weights = DTYPES[asked] if asked in ("bf16", "fp16") else "bfloat16 where supported"
    if job.adapter.type == "qlora":
        notes.append(f"unsloth: base weights in 4-bit NF4 (bitsandbytes), adapters and compute in {weights}")
    elif job.model.dtype == "float32":
        notes.append(f"unsloth: weights are held in {weights}, not float32 (model.dtype float32 means fp32 "
                     f"master weights on native)")
    return notes


def unsloth_spec(job: Job, run_dir: Path, precision: str, *, dry_run: bool = False, resume_step: int = 0,
                 total_steps: int | None = None) -> dict[str, Any]:
    """{"module", "config", "trainer", "args"}: the trl backend's translation with Unsloth's differences.
    `precision`: bf16 or fp16, the dtype the weights are loaded in."""
    from trainhub.runners.trl.translate import translate

    # bf16 / fp16 are set below from the weights' dtype (the child chose it), not by the trl backend's rule
    spec = translate(job, run_dir, cuda=True, bf16_ok=True, dry_run=dry_run, resume_step=resume_step,
                     total_steps=total_steps)
    args = spec["args"]
    args.pop("gradient_checkpointing_kwargs", None)
    args.update(gradient_checkpointing=False, bf16=precision == "bf16", fp16=precision == "fp16")
    return spec


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
