"""The unsloth backend's process, run by Unsloth's environment's python (trainhub.envs):

    python -m trainhub.runners.unsloth_child --run-dir DIR [--dry-run] [--resume CHECKPOINT]

Unsloth is imported first, before anything imports transformers, trl or peft: importing it
patches them (its fused kernels, and TRL's trainers rewritten into Unsloth* trainers whose
sources go to UNSLOTH_COMPILE_LOCATION, which the runner points into the run folder).

Then: FastLanguageModel.from_pretrained and get_peft_model with the arguments
trainhub.runners.unsloth translates from the job; the data through trainhub's own data layer
(the same token ids and loss masks as every backend); TRL's trainer for the method, with the
configuration the trl backend's translation gives; trainhub's Trainer callback
(metrics/hf_callback.py) writing the common rows. Where Unsloth changes a trainer setting behind
the job's back (GRPO's loss type, KL weight, clipping), the setting the trainer really runs with
is compared with the job's and every difference is said in the start row's notes.

Saved at the end: the LoRA adapter in DIR/adapter (with the tokenizer) and, when export.merged,
the 16-bit merged model in DIR/final (Unsloth's save_pretrained_merged); a full fine-tune goes
to DIR/final. Exits 0, 130 (stopped after saving) or 1 (an error row says why).
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
    return child_main("trainhub.runners.unsloth_child", train, argv, explain=explain,
                      resume_help="a Trainer checkpoint folder to continue from")


def train(job: Job, run_dir: Path, log: MetricLog, run_id: str, *, dry_run: bool = False,
          resume: Path | None = None) -> str:
    """Build, train, save; returns 'completed', 'interrupted' or 'failed' (non-finite). Rows go to `log`."""
    import torch
    from transformers.trainer_callback import PrinterCallback
    from transformers.utils import logging as hf_logging
    from unsloth import FastLanguageModel

    from trainhub.engine.model import build_tokenizer
    from trainhub.engine.stop import StopFlag
    from trainhub.metrics.hf_deferred import defer_logs
    from trainhub.runners.unsloth import load_args, notes_for, peft_args
    from trainhub.runners.unsloth_trainer import build_trainer, changed_settings
    from trainhub.trl_child.train import (
        count_trained_tokens,
        finish,
        metrics_callback,
        nonfinite_policy,
        run,
        skip_module_walks,
    )

    hf_logging.disable_progress_bar()
    stop = StopFlag.install()
    notes = notes_for(job)
    tokenizer = build_tokenizer(job, run_dir)  # trainhub's tokenizer (template applied), as every backend
    kwargs = load_args(job)
    if kwargs["dtype"] is None:  # precision auto: bf16 where the GPU has it, as native decides
        kwargs["dtype"] = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
        notes.append(f"precision auto: {kwargs['dtype']}")
    precision = {"bfloat16": "bf16", "float16": "fp16"}[kwargs["dtype"]]
    kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    model, _unsloth_tokenizer = FastLanguageModel.from_pretrained(**kwargs)
    lora = peft_args(job)
    if lora is not None:
        model = FastLanguageModel.get_peft_model(model, **lora)
    trainer, wanted, data, tokens_fn = build_trainer(job, model, tokenizer, run_dir, precision, dry_run=dry_run,
                                          resume=resume)
    notes += data.notes + changed_settings(wanted, trainer.args)  # Unsloth's own overrides, said
    callback = metrics_callback(job, log, run_id, backend="unsloth", precision=f"{precision} (unsloth)", notes=notes,
                                data=data, stop=stop, resume=resume)
    if tokens_fn is not None:  # ORPO: its pair batches hold no input_ids; the collator counts
        callback.tokens_fn = tokens_fn
    if job.method.type == "sft":  # under Unsloth's SFTTrainer neither TRL's num_tokens nor the Trainer's count
        callback.tokens_fn = count_trained_tokens(trainer)  # reaches the rows (0 on the GPU machine)
        # each step's log read one step late, so a row every step does not drain the GPU (hf_deferred.py)
        defer_logs(trainer, tokens=callback.tokens_fn.peek)
        # the Trainer's per-step walks over all 1,337 modules (LoRA on the 1B shape): clip and zero_grad
        # over the parameters that hold a gradient (Unsloth's own), the FLOPs count taken once (ours)
        unsloth_fast_grads(trainer.model)
        skip_module_walks(trainer)
    nonfinite_policy(job, trainer, callback)  # skip: a bad step's update dropped on the device (hf_nonfinite.py)
    trainer.add_callback(callback)
    trainer.remove_callback(PrinterCallback)  # the hub shows trainhub's rows; the Trainer's dicts would double them
    for note in notes:
        print(f"note: {note}", flush=True)
    run(trainer, resume)

    return finish(job, trainer, callback, stop, has_eval=data.eval is not None, dry_run=dry_run,
                  save=lambda: save(job, model, tokenizer, run_dir))


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
    """The adapter (LoRA, QLoRA) and the merged 16-bit model when export.merged; a full fine-tune's model."""
    if job.adapter.type == "full":
        model.save_pretrained(run_dir / "final", safe_serialization=True)
        tokenizer.save_pretrained(run_dir / "final")
        return [run_dir / "final"]
    model.save_pretrained(run_dir / "adapter", safe_serialization=True)
    tokenizer.save_pretrained(run_dir / "adapter")
    saved = [run_dir / "adapter"]
    if job.export.merged:
        # QLoRA: the 4-bit base is dequantized to 16-bit and the adapter merged into it
        model.save_pretrained_merged(str(run_dir / "final"), tokenizer, save_method="merged_16bit")
        saved.append(run_dir / "final")
    return saved


if __name__ == "__main__":
    sys.exit(main())
