"""What a Trainer-based child (trl, unsloth) builds around TRL's trainer, and how it runs it: the reward
functions, trainhub's optimizer and schedule, the non-finite policy, the metrics callback, the run, and
its end (final evaluation, final save, end row).

The tokenizer and model are trainhub's own (trainhub.engine.model: the job's template, dtype, LoRA), so
a job trains the same network under either backend; the data come from the data layer (data.py); the
TRL config from translate.py. The trainer is TRL's, used as it is, with trainhub's metrics callback
(hf/callback.py) writing the common rows.
"""

from __future__ import annotations

from pathlib import Path

from trainhub.job import Job
from trainhub.metrics import MetricLog

PROBE_ROWS = 4
"""Prompts each reward function is tried on before training."""


def load_rewards(job: Job, data) -> list:
    """GRPO: the job's reward functions, imported, signature-checked and tried on the first prompts of the
    train data (before the model is built, where the child can); any other method has none. With
    method.reward_workers each is a PooledReward (rewards/pool.py) under the function's name."""
    from trainhub.rewards.load import load, probe

    if job.method.type != "grpo":
        return []
    rows = data.train.select(range(min(PROBE_ROWS, len(data.train)))).to_list()
    funcs = []
    for i, reward in enumerate(job.method.rewards):
        where = f"method.rewards[{i}] ({reward.function})"
        fn = load(reward.function, where)
        probe(fn, reward.function, where, rows)
        funcs.append(fn)
    if job.method.reward_workers:  # TRL calls each one as it would the function, which scores in the workers
        from trainhub.rewards.pool import pooled

        funcs = pooled(job.method.rewards, funcs, job.method.reward_workers)[1]
    return funcs


def make_trainer(job: Job, spec: dict, *, model, tokenizer, data, rewards: list, optimizers):
    """(TRL's trainer for the job's method, tokens_fn): built from the translated spec (module, config class,
    trainer class, config keywords) with trainhub's data, optimizer and schedule, reward functions and the
    method's collator (data.py method_collator); tokens_fn, when not None, counts the tokens the rows
    report (ORPO's pair collator). Under Unsloth the module is imported after `import unsloth`, so its
    patched classes are the ones built."""
    import importlib

    from trainhub.runners.trl.data import method_collator

    module = importlib.import_module(spec["module"])
    config = getattr(module, spec["config"])(**spec["args"])
    kwargs = {"model": model, "args": config, "train_dataset": data.train, "eval_dataset": data.eval,
              "processing_class": tokenizer, "optimizers": optimizers}
    if job.method.type == "grpo":
        kwargs["reward_funcs"] = rewards
    collator, tokens_fn = method_collator(job, tokenizer)
    if collator is not None:
        kwargs["data_collator"] = collator
    return getattr(module, spec["trainer"])(**kwargs), tokens_fn


def train_and_finish(job: Job, trainer, log: MetricLog, run_id: str, *, backend: str, precision: str,
                     notes: list[str], data, stop, resume: Path | None, dry_run: bool, tokens_fn, save) -> str:
    """The common end of a Trainer-based child once its trainer is built (and patched): the non-finite
    policy, the metrics callback in place of the Trainer's printed dicts (the hub shows trainhub's rows;
    the dicts would double them), the notes, the run, then `finish`."""
    from transformers.trainer_callback import PrinterCallback

    skip = nonfinite_policy(job, trainer, notes)
    callback = metrics_callback(job, log, run_id, backend=backend, precision=precision, notes=notes, data=data,
                                stop=stop, resume=resume, nonfinite=skip, tokens_fn=tokens_fn)
    trainer.add_callback(callback)
    trainer.remove_callback(PrinterCallback)
    if job.method.type in TOKEN_LOSS_METHODS:
        trainer.evaluate = token_mean_evaluate(trainer)
    for note in notes:
        print(f"note: {note}", flush=True)
    run(trainer, resume)
    return finish(job, trainer, callback, stop, has_eval=data.eval is not None, dry_run=dry_run, save=save)


TOKEN_LOSS_METHODS = ("sft", "pretrain")
"""Methods whose loss is a mean over target tokens, evaluated as native does (token_mean_evaluate)."""


def token_mean_evaluate(trainer):
    """An `evaluate` for the trainer that reports the exact mean loss over the eval set's target tokens, as the
    native engine does (engine/step.py evaluate). The Trainer's own evaluation loop averages each batch's mean
    with equal weight per row, which differs whenever the batches hold different numbers of target tokens
    (issue 32: 7.0662 against native's 7.0521 on identical weights). Metrics and callbacks as the Trainer's."""
    import torch

    def evaluate(eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict:
        model = trainer.model
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for batch in trainer.get_eval_dataloader(eval_dataset):
                batch = trainer._prepare_inputs(batch)
                targets = int((batch["labels"][..., 1:] != -100).sum())
                if not targets:
                    continue
                with trainer.autocast_smart_context_manager():
                    out = model(**batch, num_items_in_batch=torch.tensor(targets, device=batch["labels"].device))
                total += float(out.loss.double()) * targets  # sum over the batch's targets / targets
                count += targets
        model.train(was_training)
        metrics = {f"{metric_key_prefix}_loss": total / max(count, 1)}
        trainer.log(metrics)
        trainer.control = trainer.callback_handler.on_evaluate(trainer.args, trainer.state, trainer.control, metrics)
        return metrics

    return evaluate


def metrics_callback(job: Job, log: MetricLog, run_id: str, *, backend: str, precision: str, notes: list[str],
                     data, stop, resume: Path | None, nonfinite=None, tokens_fn=None):
    """The MetricsCallback of a Trainer-based child (trl, unsloth): the start row's fields, and on --resume
    the checkpoint's token count, which the rows go on from (a fresh collator counts from 0 again).
    `nonfinite`: the SkipNonFinite of train.on_nonfinite: skip; `tokens_fn`: a token count for a trainer
    that reports none (hf/callback.py)."""
    from trainhub.hf.callback import MetricsCallback, start_fields
    from trainhub.job.sizes import longest_sequence, tokens_per_step
    from trainhub.resume import read_state

    saved = read_state(resume)[0] if resume is not None else {}
    return MetricsCallback(log, run_id, stop=stop, seq_len=longest_sequence(job), eval_tokens=data.eval_tokens,
                           resumed_tokens=saved.get("tokens", 0), resumed_skipped=saved.get("nonfinite_skipped", 0),
                           nonfinite=nonfinite, nonfinite_limit=job.train.nonfinite_limit, tokens_fn=tokens_fn,
                           start_fields=start_fields(backend=backend, job=job, precision=precision,
                                                     tokens_per_step=tokens_per_step(job), notes=notes, data=data.stats,
                                                     resumed_from=str(resume) if resume else None))


def nonfinite_policy(job: Job, trainer, notes: list[str]):
    """train.on_nonfinite: skip: a step with a non-finite loss or gradient leaves the weights and the
    optimizer as they were (hf/nonfinite.py), and the callback's rows count it: the SkipNonFinite the
    callback takes is returned; stop: None, and the callback stops at the first. Either way the test hook
    TRAINHUB_INJECT_NONFINITE is honoured."""
    from trainhub.hf.nonfinite import SkipNonFinite, inject_nonfinite

    inject_nonfinite(trainer, notes)
    return SkipNonFinite(trainer, trainer.optimizer, notes) if job.train.on_nonfinite == "skip" else None


def optimizer_and_schedule(job: Job, model, device, total: int):
    """trainhub's optimizer (engine/optim: role groups with their lr multipliers) and its learning-rate
    schedule (engine/schedule.py), given to the trainer as its optimizer and scheduler, so trl steps exactly
    as native does. LambdaLR scales each group's own initial lr (peak x multiplier) by lr_at / peak."""
    from torch.optim.lr_scheduler import LambdaLR

    from trainhub.engine.optim import build_optimizer
    from trainhub.engine.schedule import lr_at

    peak, schedule = job.optim.lr, job.schedule
    optimizer = build_optimizer(job.optim, model, device)
    return optimizer, LambdaLR(optimizer, lambda step: lr_at(step, peak=peak, total=total, schedule=schedule) / peak)


def run(trainer, resume: Path | None) -> None:
    """trainer.train(), from the checkpoint folder `resume` when given, with the setup's objects frozen
    out of the garbage collector's full collections (trainhub.engine.heap). The dataloader's workers fork
    after the data was tokenized: TOKENIZERS_PARALLELISM set (to what it already was, or false) keeps the
    tokenizers library from warning in each of them."""
    import os

    from trainhub.engine.heap import freeze_setup

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    freeze_setup()  # model, data and the Trainer's setup: out of every later full collection (engine/heap.py)
    trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)


def finish(job: Job, trainer, callback, stop, *, has_eval: bool, dry_run: bool, save) -> str:
    """After trainer.train(), for every Trainer-based child: the status, and on completion (not a dry run)
    the final evaluation and `save()` (the folders it returns get checkpoint rows); then the end row, with
    an exit code when failed, as native writes it."""
    from trainhub.child import EXIT_FAILED

    if callback.failed:
        callback.end("failed", exit_code=EXIT_FAILED)
        return "failed"
    status = "interrupted" if stop.requested else "completed"
    if status == "completed" and not dry_run:
        every = job.train.eval_every
        if has_eval and not (every and trainer.state.global_step % every == 0):
            trainer.evaluate()  # native evaluates at the end; the Trainer only every eval_steps
        from trainhub.engine.optim.hooks import evaluation_weights

        with evaluation_weights(trainer.optimizer):  # schedule-free: the average is the model to keep
            paths = save()
        for path in paths:
            callback.checkpoint(path)
    callback.end(status)
    return status
