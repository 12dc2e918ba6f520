"""The unsloth backend's process, run by Unsloth's environment's python (trainhub.envs):

    python -m trainhub.runners.unsloth.child --run-dir DIR [--dry-run] [--resume CHECKPOINT]

Unsloth is imported first, before anything imports transformers, trl or peft: importing it
patches them (its fused kernels, and TRL's trainers rewritten into Unsloth* trainers whose
sources go to UNSLOTH_COMPILE_LOCATION, which the runner points into the run folder).

Then: FastLanguageModel.from_pretrained and get_peft_model with the arguments translate.py
gives; the data through trainhub's own data layer (the same token ids and loss masks as every
backend); TRL's trainer for the method, with the configuration the trl backend's translation gives
(translate.unsloth_spec); the hf/ patches the unsloth SFT step needs (the token count, the log one
step late, the FLOPs count taken once; hf/__init__.py); trainhub's Trainer callback (hf/callback.py)
writing the common rows. Where Unsloth changes a trainer setting behind
the job's back (GRPO's loss type, KL weight, clipping), the setting the trainer really runs with
is compared with the job's and every difference is said in the start row's notes.

Saved at the end as native and trl save (export/hf.py save_final): the LoRA adapter in DIR/adapter
and, when export.merged, the 16-bit merged model in DIR/final (the merge is Unsloth's
save_pretrained_merged); a full fine-tune goes to DIR/final. Exits 0, 130 (stopped after saving) or 1 (an error row says why).
"""

from __future__ import annotations

# ruff: isort: skip_file
import unsloth  # noqa: F401  first: it patches transformers, trl and peft as it is imported

import sys
from pathlib import Path

from trainhub.child import child_main
from trainhub.job import Job
from trainhub.metrics import MetricLog


def explain(err: Exception) -> dict | None:
    from trainhub.rewards.load import RewardError

    return {"message": f"method.rewards: {err}"} if isinstance(err, RewardError) else None


def main(argv: list[str] | None = None) -> int:
    return child_main("trainhub.runners.unsloth.child", train, argv, explain=explain,
                      resume_help="a Trainer checkpoint folder to continue from")


def train(job: Job, run_dir: Path, log: MetricLog, run_id: str, *, dry_run: bool = False,
          resume: Path | None = None) -> str:
    """Build, train, save; returns 'completed', 'interrupted' or 'failed' (non-finite). Rows go to `log`."""
    import torch
    from transformers.utils import logging as hf_logging
    from unsloth import FastLanguageModel

    from trainhub.engine.model import build_tokenizer
    from trainhub.engine.precision import DTYPES, choose
    from trainhub.engine.stop import StopFlag
    from trainhub.hf.deferred import defer_logs
    from trainhub.hf.flops import skip_module_walks
    from trainhub.hf.tokens import count_trained_tokens
    from trainhub.runners.trl.trainer import train_and_finish
    from trainhub.runners.unsloth.translate import changed_settings, load_args, notes_for, peft_args

    hf_logging.disable_progress_bar()
    stop = StopFlag.install()
    notes = notes_for(job)
    tokenizer = build_tokenizer(job, run_dir)  # trainhub's tokenizer (template applied), as every backend
    # bf16 where the GPU has it, as native decides; Unsloth trains in 16 bits only, so auto falls back to fp16
    precision = choose(job.train.precision.type, cuda=True, bf16_ok=torch.cuda.is_bf16_supported(), half_only=True)
    if job.train.precision.type == "auto":
        notes.append(f"precision auto: {DTYPES[precision]}")
    model, _unsloth_tokenizer = FastLanguageModel.from_pretrained(**{**load_args(job),
                                                                     "dtype": getattr(torch, DTYPES[precision])})
    lora = peft_args(job)
    if lora is not None:
        model = FastLanguageModel.get_peft_model(model, **lora)
    trainer, wanted, data, tokens_fn = build_trainer(job, model, tokenizer, run_dir, precision, dry_run=dry_run,
                                                     resume=resume)
    notes += data.notes + changed_settings(wanted, trainer.args)  # Unsloth's own overrides, said
    if job.method.type == "sft":  # under Unsloth's SFTTrainer neither TRL's num_tokens nor the Trainer's count
        tokens_fn = count_trained_tokens(trainer, notes)  # reaches the rows (0 on the GPU machine)
        # each step's log read one step late, so a row every step does not drain the GPU (hf/deferred.py)
        defer_logs(trainer, tokens=tokens_fn.peek, notes=notes)
        # the Trainer's per-step walks over all 1,337 modules (LoRA on the 1B shape): clip and zero_grad
        # over the parameters that hold a gradient (Unsloth's own), the FLOPs count taken once (hf/flops.py)
        unsloth_fast_grads(trainer.model)
        skip_module_walks(trainer, notes)
    # ORPO: its pair batches hold no input_ids, so its collator counts (tokens_fn from build_trainer)
    return train_and_finish(job, trainer, log, run_id, backend="unsloth", precision=f"{precision} (unsloth)",
                            notes=notes, data=data, stop=stop, resume=resume, dry_run=dry_run, tokens_fn=tokens_fn,
                            save=lambda: save(job, model, tokenizer, run_dir))


def build_trainer(job: Job, model, tokenizer, run_dir: Path, precision: str, *, dry_run: bool,
                  resume: Path | None):
    """(trainer, the config asked for, data, tokens_fn) for the job's method. The trainer gets no callback
    yet; tokens_fn, when not None, counts the tokens the rows report (ORPO's pair collator)."""
    from trainhub.engine.device import pick_device
    from trainhub.engine.schedule import total_steps
    from trainhub.resume import read_state
    from trainhub.runners.trl.data import build
    from trainhub.runners.trl.trainer import load_rewards, make_trainer, optimizer_and_schedule
    from trainhub.runners.unsloth.translate import unsloth_spec

    data = build(job, tokenizer)
    resume_step = read_state(resume)[0]["step"] if resume is not None else 0
    total = total_steps(job, len(data.train))
    spec = unsloth_spec(job, run_dir, precision, dry_run=dry_run, resume_step=resume_step, total_steps=total)
    # SFT: trainhub's own padding of its pre-tokenized rows, not the DataCollatorForSeq2Seq Unsloth would pick
    # (the tokenizer's pad(): most of a step's host time); ORPO: TRL's pair collator, counting tokens
    trainer, tokens_fn = make_trainer(job, spec, model=model, tokenizer=tokenizer, data=data,
                                      rewards=load_rewards(job, data),
                                      optimizers=optimizer_and_schedule(job, model, pick_device(), total))
    return trainer, spec["args"], data, tokens_fn


def unsloth_fast_grads(model) -> bool:
    """Unsloth's clip and zero_grad that skip the module walk (unsloth_zoo.fast_grad_params; its loaders
    turn it on for MoE models only); False where this Unsloth has none or declines the model, which
    then keeps the Trainer's own."""
    try:
        from unsloth_zoo.fast_grad_params import enable_fast_grad_params
    except ImportError:
        return False
    return bool(enable_fast_grad_params(model))


def save(job: Job, model, tokenizer, run_dir: Path) -> list[Path]:
    """The final model, as every trainhub-process backend saves it (export/hf.py save_final), with the
    merge done by Unsloth (save_pretrained_merged: a QLoRA's 4-bit base is dequantized to 16 bits and the
    adapter merged into it; the tokenizer saved beside)."""
    from trainhub.export.hf import save_final

    def merge(final: Path) -> None:
        model.save_pretrained_merged(str(final), tokenizer, save_method="merged_16bit")

    return [save_final(model, tokenizer, run_dir, job, merge=merge)]

if __name__ == "__main__":
    sys.exit(main())
