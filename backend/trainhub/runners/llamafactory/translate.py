"""A job, translated into LLaMA-Factory's own training arguments (the YAML `llamafactory-cli train` reads).

Pure: no LLaMA-Factory, no torch; the runner writes the result to RUN/llamafactory.yaml (what `plan`
prints), and the child hands it to `run_exp`. The translation, key by key, is the table in
docs/backends.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from trainhub.engine.precision import choose
from trainhub.job import Job

CONFIG = "llamafactory.yaml"
"""The config file in the run folder."""
STAGES = {"pretrain": "pt", "sft": "sft", "dpo": "dpo", "orpo": "dpo", "kto": "kto"}
"""job method -> LLaMA-Factory stage (ORPO is its dpo stage with pref_loss orpo)."""
TEMPLATES = {"chatml": "chatml", "qwen2": "qwen", "llama3": "llama3", "mistral": "mistral", "gemma": "gemma"}
"""trainhub's built-in chat templates -> LLaMA-Factory's templates of the same rendering. null: none is
passed, and LLaMA-Factory parses the tokenizer's own chat template (as the native engine uses it)."""
DATASET = "trainhub_train"
EVAL_DATASET = "trainhub_eval"


def translate(job: Job, run_dir: Path, data_dir: Path, *, has_eval: bool, dry_run: bool = False,
              resume: Path | None = None) -> dict:
    """LLaMA-Factory's training arguments for the job (every key it reads, as its YAML names them)."""
    a, t, o = job.adapter, job.train, job.optim
    cfg: dict = {
        "model_name_or_path": str(Path(job.model.path).expanduser().resolve())
        if Path(job.model.path).expanduser().exists() else job.model.path,
        "trust_remote_code": job.model.trust_remote_code,
        "flash_attn": {"sdpa": "sdpa", "eager": "disabled", "flash_attention_2": "fa2"}[job.model.attention],
        "stage": STAGES[job.method.type],
        "do_train": True,
        "finetuning_type": a.type,
    }
    if a.type == "lora":
        cfg.update(lora_rank=a.rank, lora_alpha=a.alpha, lora_dropout=a.dropout,
                   lora_target="all" if a.targets == "all-linear" else ",".join(a.targets))
    cfg.update(dataset=DATASET, dataset_dir=str(data_dir), cutoff_len=job.data.max_length,
               overwrite_cache=True, preprocessing_num_workers=1)
    if job.data.template is not None:
        cfg["template"] = TEMPLATES[job.data.template]
    cfg.update(_method(job))
    if job.method.type == "sft":
        cfg["train_on_prompt"] = job.method.train_on == "all"
        if job.data.packing:  # per-conversation attention, as the native engine packs
            cfg.update(packing=True, neat_packing=True)
    if has_eval and not dry_run:  # a dry run is one step and no evaluation, as native's
        cfg.update(eval_dataset=EVAL_DATASET, per_device_eval_batch_size=t.micro_batch_size,
                   eval_strategy="steps" if t.eval_every else "no")
        if t.eval_every:
            cfg["eval_steps"] = t.eval_every
    s = job.schedule
    cfg.update(
        output_dir=str(run_dir / "checkpoints"), overwrite_output_dir=True, logging_steps=t.log_every,
        save_strategy="steps" if t.save_every else "no", save_total_limit=t.keep_last,
        report_to="none", disable_tqdm=True, plot_loss=False, include_num_input_tokens_seen="non_padding",
        seed=job.seed, data_seed=job.seed,
        per_device_train_batch_size=t.micro_batch_size, gradient_accumulation_steps=t.grad_accum,
        learning_rate=o.lr, adam_beta1=o.betas[0], adam_beta2=o.betas[1], adam_epsilon=o.eps,
        weight_decay=o.weight_decay, optim="adamw_torch", warmup_steps=s.warmup_steps,
        max_grad_norm=t.grad_clip if t.grad_clip is not None else 0.0,
        disable_gradient_checkpointing=t.grad_checkpointing != "full",
    )
    if t.save_every:
        cfg["save_steps"] = t.save_every
    if s.decay == "cosine":
        cfg.update(lr_scheduler_type="cosine_with_min_lr", lr_scheduler_kwargs={"min_lr_rate": s.min_lr_ratio})
    else:
        cfg["lr_scheduler_type"] = {"linear": "linear", "constant": "constant_with_warmup"}[s.decay]
    if dry_run:  # one optimizer step past where the run starts
        cfg["max_steps"] = 1 + (_global_step(resume) if resume is not None else 0)
    elif t.max_steps is not None:
        cfg["max_steps"] = t.max_steps
    else:
        cfg["num_train_epochs"] = t.epochs
    cfg.update(precision_keys(job.train.precision.type))
    if not job.data.shuffle:
        cfg["disable_shuffling"] = True
    if resume is not None:
        cfg["resume_from_checkpoint"] = str(resume)
    return cfg


def _method(job: Job) -> dict:
    """The preference methods' own keys (LLaMA-Factory's pref_* and kto_* arguments)."""
    m = job.method
    if m.type == "dpo":
        return {"pref_beta": m.beta, "pref_loss": m.loss}
    if m.type == "orpo":
        return {"pref_beta": m.beta, "pref_loss": "orpo"}
    if m.type == "kto":
        return {"pref_beta": m.beta, "kto_chosen_weight": m.desirable_weight,
                "kto_rejected_weight": m.undesirable_weight}
    return {}


def _global_step(checkpoint: Path) -> int:
    return int(json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"])


def precision_keys(asked: str, *, cuda: bool = True, bf16_ok: bool = True, notes: list[str] | None = None) -> dict:
    """LLaMA-Factory's bf16 / fp16 for train.precision, by the rule every backend uses (engine/precision.py).
    The config is written for a GPU with bf16; the child sets them again for the device it has."""
    chosen = choose(asked, cuda=cuda, bf16_ok=bf16_ok, notes=notes)
    return {"bf16": chosen == "bf16", "fp16": chosen == "fp16"}
