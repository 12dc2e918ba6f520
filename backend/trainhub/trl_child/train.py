"""One TRL run, top to bottom: tokenizer, data, rewards, model, config, trainer, train, save.

The tokenizer and model are trainhub's own (trainhub.engine.model: the job's template, dtype,
LoRA), so a job trains the same network under either backend; the data come from the data layer
(trl_child/data.py); the TRL config from translate.py. The trainer is TRL's, used as it is, with
trainhub's metrics callback (metrics/hf_callback.py) writing the common rows.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from trainhub.job import Job
from trainhub.metrics import MetricLog

PROBE_ROWS = 4
"""Prompts each reward function is tried on before training."""


def load_rewards(job: Job, rows: list[dict]) -> list:
    """The job's reward functions, imported, signature-checked and tried on the first prompts."""
    from trainhub.rewards.load import load, probe

    funcs = []
    for i, reward in enumerate(job.method.rewards):
        where = f"method.rewards[{i}] ({reward.function})"
        fn = load(reward.function, where)
        probe(fn, reward.function, where, rows[:PROBE_ROWS])
        funcs.append(fn)
    return funcs


def sizes(job: Job) -> tuple[int, int]:
    """(sequence length FLOPs are charged at, upper bound on tokens per optimizer step)."""
    tc, m = job.train, job.method
    seq = job.data.max_length + (m.max_new_tokens if m.type == "grpo" else 0)
    per_example = 2 if m.type in ("dpo", "orpo") else 1  # a pair is two sequences
    return seq, tc.micro_batch_size * tc.grad_accum * seq * per_example


def metrics_callback(job: Job, log: MetricLog, run_id: str, *, backend: str, precision: str, notes: list[str],
                     data, stop, resume: Path | None):
    """The MetricsCallback of a Trainer-based child (trl, unsloth): the start row's fields, and on --resume
    the checkpoint's token count, which the rows go on from (a fresh collator counts from 0 again)."""
    from trainhub.metrics.hf_callback import MetricsCallback, start_fields
    from trainhub.resume import read_state

    saved = read_state(resume)[0] if resume is not None else {}
    seq, per_step = sizes(job)
    return MetricsCallback(log, run_id, stop=stop, seq_len=seq, eval_tokens=data.eval_tokens,
                           resumed_tokens=saved.get("tokens", 0), resumed_skipped=saved.get("nonfinite_skipped", 0),
                           nonfinite_limit=job.train.nonfinite_limit,
                           start_fields=start_fields(backend=backend, job=job, precision=precision,
                                                     tokens_per_step=per_step, notes=notes, data=data.stats,
                                                     resumed_from=str(resume) if resume else None))


def nonfinite_policy(job: Job, trainer, callback) -> None:
    """train.on_nonfinite: skip: a step with a non-finite loss or gradient leaves the weights and the
    optimizer as they were (metrics/hf_nonfinite.py), and the callback's rows count it; stop: the
    callback stops at the first. Either way the test hook TRAINHUB_INJECT_NONFINITE is honoured."""
    from trainhub.metrics.hf_nonfinite import SkipNonFinite, inject_nonfinite

    inject_nonfinite(trainer)
    if job.train.on_nonfinite == "skip":
        callback.nonfinite = SkipNonFinite(trainer, trainer.optimizer)


class CountingCollator:
    """A collator, unchanged, that also counts the non-padding tokens of what it collates: the sum of the
    attention masks it returns (a pair's chosen and rejected sequences each hold the prompt). For ORPO,
    whose pair batches hold no input_ids, so its trainer counts no tokens itself."""

    MASKS = ("attention_mask", "chosen_attention_mask", "rejected_attention_mask")

    def __init__(self, collate):
        self.collate, self.tokens = collate, 0

    def __call__(self, features):
        batch = self.collate(features)
        self.tokens += sum(int(batch[k].sum()) for k in self.MASKS if k in batch)
        return batch


class PadCollator:
    """Pre-tokenized SFT rows {input_ids, labels} -> right-padded int64 tensors: input_ids (pad_id), labels
    (-100 past each row) and attention_mask.

    What transformers' DataCollatorForSeq2Seq gives for these rows (the collator Unsloth's SFTTrainer picks),
    without the tokenizer's pad(), which walks Python lists: 4 rows of 2,048 tokens took 10.5 ms there and
    1.8 ms here (this 2-core machine; research/results/unsloth.md). On a GPU it runs in the dataloader's
    worker processes (translate.DATALOADER_WORKERS), so it keeps no state: a count kept here would stay in
    the worker."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features):
        import numpy as np
        import torch

        from trainhub.data.chat import IGNORE

        width = max(len(f["input_ids"]) for f in features)
        ids = np.full((len(features), width), self.pad_id, dtype=np.int64)
        labels = np.full((len(features), width), IGNORE, dtype=np.int64)
        mask = np.zeros((len(features), width), dtype=np.int64)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = f["input_ids"], f["labels"], 1
        return {"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels),
                "attention_mask": torch.from_numpy(mask)}


def count_trained_tokens(trainer) -> TokenCount:
    """Count the real (attention-mask) tokens of every micro-batch the trainer trains on, in the main
    process; the TokenCount is the reader MetricsCallback takes as its tokens_fn. For a trainer that
    reports no count of its own (Unsloth's SFTTrainer).

    The count is summed on the batch's device, without a host sync; reading it syncs, which the rows do
    only where the Trainer has just synced to log the loss (or one step late, metrics/hf_deferred.py,
    which takes the device sum with `peek`). training_step sees training batches only, so evaluation
    batches stay out of the count."""
    count = TokenCount()
    inner = trainer.training_step

    def training_step(model, inputs, *args, **kwargs):
        mask = inputs.get("attention_mask")
        if mask is not None:
            count.add(mask.detach().sum())
        return inner(model, inputs, *args, **kwargs)

    trainer.training_step = training_step
    return count


def skip_module_walks(trainer) -> None:
    """Take the Trainer's FLOPs count out of every micro-batch, with the same value.

    `floating_point_ops` counts the model's parameters again for every micro-batch, a walk over every
    module (1,337 with LoRA on the 1B shape); here the count is taken once, as the model does not change
    shape while training. The other per-step walks, clip and zero_grad over `model.parameters()`, are
    Unsloth's to skip (unsloth_child.unsloth_fast_grads); `model.train()` in every training_step stays,
    as it must reach every module in case something switched one to eval mode. On the 2-core dev
    machine the Trainer added 0.5-4.7 ms of host time per step over a hand loop at this module count,
    and counting once took 0.2-2.3 ms of it away (two runs of research/trainer_host_overhead.py;
    research/results/unsloth.md, eighth session)."""
    model = trainer.model
    main = getattr(model, "main_input_name", "input_ids")
    count: list[int] = []

    def floating_point_ops(inputs) -> int:
        if main not in inputs or not hasattr(model, "num_parameters"):
            return 0
        if not count:
            count.append(model.num_parameters(exclude_embeddings=True))
        return 6 * inputs[main].numel() * count[0]

    trainer.floating_point_ops = floating_point_ops


class TokenCount:
    """A running token count kept on the device (see count_trained_tokens)."""

    def __init__(self):
        self.total = None

    def add(self, n) -> None:
        self.total = n if self.total is None else self.total + n  # a new tensor: a peeked one stays as it was

    def peek(self):
        """The count so far, as a device tensor (or 0), without a sync."""
        return 0 if self.total is None else self.total

    def __call__(self) -> int:
        return 0 if self.total is None else int(self.total)


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


def train(job: Job, run_dir: Path, log: MetricLog, run_id: str, *, dry_run: bool = False,
          resume: Path | None = None) -> str:
    """Run the job with TRL; returns 'completed', 'interrupted' or 'failed' (non-finite). Rows go to `log`."""
    import datasets
    import torch
    from transformers.trainer_callback import PrinterCallback
    from transformers.utils import logging as hf_logging

    from trainhub.engine.device import pick_device, pick_precision
    from trainhub.engine.model import build_tokenizer
    from trainhub.engine.models.hf import build as build_model
    from trainhub.engine.stop import StopFlag
    from trainhub.export.hf import save_final
    from trainhub.resume import read_state
    from trainhub.trl_child.data import build
    from trainhub.trl_child.translate import translate

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
    rewards = load_rewards(job, data.train.select(range(min(PROBE_ROWS, len(data.train)))).to_list()) \
        if job.method.type == "grpo" else []
    model = build_model(job, tokenizer).to(device)  # before the optimizer is built over its parameters

    saved = read_state(resume)[0] if resume is not None else {}
    resume_step = saved.get("step", 0)
    cuda = device.type == "cuda"
    from trainhub.engine.schedule import total_steps

    total = total_steps(job, len(data.train))
    spec = translate(job, run_dir, cuda=cuda, bf16_ok=cuda and torch.cuda.is_bf16_supported(), dry_run=dry_run,
                     resume_step=resume_step, total_steps=total)
    module = importlib.import_module(spec["module"])
    config = getattr(module, spec["config"])(**spec["args"])
    callback = metrics_callback(job, log, run_id, backend="trl", precision=prec.name, notes=notes, data=data,
                                stop=stop, resume=resume)
    kwargs = {"model": model, "args": config, "train_dataset": data.train, "eval_dataset": data.eval,
              "processing_class": tokenizer, "callbacks": [callback],
              "optimizers": optimizer_and_schedule(job, model, device, total)}
    if job.method.type == "grpo":
        kwargs["reward_funcs"] = rewards
    collator, tokens_fn = method_collator(job, tokenizer)
    if collator is not None:
        kwargs["data_collator"] = collator
    if tokens_fn is not None:
        callback.tokens_fn = tokens_fn
    trainer = getattr(module, spec["trainer"])(**kwargs)
    nonfinite_policy(job, trainer, callback)
    trainer.remove_callback(PrinterCallback)  # the hub shows trainhub's rows; the Trainer's dicts would double them
    for note in notes:
        print(f"note: {note}", flush=True)
    run(trainer, resume)

    return finish(job, trainer, callback, stop, has_eval=data.eval is not None, dry_run=dry_run,
                  save=lambda: [save_final(trainer.model, tokenizer, run_dir, job)])


def method_collator(job: Job, tokenizer):
    """(collator, tokens_fn) the method's trainer gets instead of its own, each None where it keeps its own:
    SFT, trainhub's ids and labels padded without the tokenizer (PadCollator); ORPO, TRL's pair collator
    counting what it pads, since its batches hold no input_ids and the Trainer counts no tokens."""
    if job.method.type == "sft":
        return PadCollator(tokenizer.pad_token_id), None
    if job.method.type == "orpo":
        from trl.experimental.utils import DPODataCollatorWithPadding

        counter = CountingCollator(DPODataCollatorWithPadding(pad_token_id=tokenizer.pad_token_id,
                                                              is_encoder_decoder=False))
        return counter, lambda: counter.tokens
    return None, None


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
    from trainhub.runners.base import EXIT_FAILED

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
