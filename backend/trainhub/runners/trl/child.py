"""`python -m trainhub.runners.trl.child --run-dir DIR [--dry-run] [--resume CKPT]`: train DIR/job.json with TRL.

One TRL run, top to bottom: tokenizer, data, rewards, model, config, trainer, patches, callback, train,
save. Exits 0 (completed), 130 (interrupted after saving) or 1 (failed; an error row says why).
"""

from __future__ import annotations

import sys
from pathlib import Path

from trainhub.child import child_main
from trainhub.job import Job
from trainhub.metrics import MetricLog


def explain(err: Exception) -> dict | None:
    from trainhub.rewards.load import RewardError

    return {"message": str(err)} if isinstance(err, RewardError) else None  # names method.rewards[i] and the function


def main(argv: list[str] | None = None) -> int:
    return child_main("trainhub.runners.trl.child", train, argv, explain=explain)


def train(job: Job, run_dir: Path, log: MetricLog, run_id: str, *, dry_run: bool = False,
          resume: Path | None = None) -> str:
    """Run the job with TRL; returns 'completed', 'interrupted' or 'failed' (non-finite). Rows go to `log`."""
    import datasets
    import torch
    from transformers.utils import logging as hf_logging

    from trainhub.engine.device import pick_device, pick_precision
    from trainhub.engine.model import build_tokenizer
    from trainhub.engine.models.hf import build as build_model
    from trainhub.engine.schedule import total_steps
    from trainhub.engine.stop import StopFlag
    from trainhub.export.hf import save_final
    from trainhub.resume import read_state
    from trainhub.runners.trl.data import build
    from trainhub.runners.trl.trainer import (
        load_rewards,
        make_trainer,
        optimizer_and_schedule,
        train_and_finish,
    )
    from trainhub.runners.trl.translate import translate

    hf_logging.disable_progress_bar()  # bars would garble the hub's console
    datasets.disable_progress_bars()
    stop = StopFlag.install()
    torch.manual_seed(job.seed)
    device = pick_device()
    notes: list[str] = []
    prec = pick_precision(job.train.precision, device, notes)
    tokenizer = build_tokenizer(job, run_dir)
    data = build(job, tokenizer)
    notes += data.notes
    rewards = load_rewards(job, data)
    model = build_model(job, tokenizer).to(device)  # before the optimizer is built over its parameters

    resume_step = read_state(resume)[0].get("step", 0) if resume is not None else 0
    cuda = device.type == "cuda"
    total = total_steps(job, len(data.train))
    spec = translate(job, run_dir, cuda=cuda, bf16_ok=cuda and torch.cuda.is_bf16_supported(), dry_run=dry_run,
                     resume_step=resume_step, total_steps=total)
    trainer, tokens_fn = make_trainer(job, spec, model=model, tokenizer=tokenizer, data=data, rewards=rewards,
                                      optimizers=optimizer_and_schedule(job, model, device, total))
    return train_and_finish(job, trainer, log, run_id, backend="trl", precision=prec.name, notes=notes, data=data,
                            stop=stop, resume=resume, dry_run=dry_run, tokens_fn=tokens_fn,
                            save=lambda: [save_final(trainer.model, tokenizer, run_dir, job)])


if __name__ == "__main__":
    sys.exit(main())
