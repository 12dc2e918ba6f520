"""The native training loop. Read it top to bottom: build, restore, then step, log, evaluate, save.

Loss normalisation: every micro-batch's loss is its summed token cross-entropy
divided by the number of target tokens in the whole optimizer step
(`num_items_in_batch`), so the gradients of micro-batch 2 x accumulation 2 equal
those of micro-batch 4 x accumulation 1, and the logged loss is the exact mean
over the step's target tokens.

Resume: everything a step depends on is restored from the checkpoint — weights,
optimizer, RNG states, step, tokens, the data position (epoch, index in that
epoch's seeded order) and the loss scaler — and the learning rate is a pure
function of the step, so a resumed run takes the same steps as an uninterrupted one.
"""

from __future__ import annotations

import math
import random
import time
from pathlib import Path

import torch

from trainhub.data.batches import Position, count_targets, micro_batches, packed_micro_batches
from trainhub.data.dataset import build_datasets
from trainhub.data.packing import mask_kind_for, pack_ffd, packing_stats
from trainhub.engine.checkpoint import load_into, save_checkpoint
from trainhub.engine.device import (
    autocast,
    device_facts,
    peak_memory_gb,
    pick_device,
    pick_precision,
    synchronize,
)
from trainhub.engine.heap import freeze_setup
from trainhub.engine.model import build_model, build_tokenizer, count_model
from trainhub.engine.optim import build_optimizer
from trainhub.engine.schedule import lr_at
from trainhub.engine.stop import StopFlag
from trainhub.job import Job
from trainhub.metrics import CheckpointRow, EndRow, ErrorRow, EvalRow, MetricLog, StartRow, TrainRow
from trainhub.metrics.flops import mfu
from trainhub.metrics.hf_nonfinite import injected_steps


class NonFiniteStop(RuntimeError):
    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def train(job: Job, run_dir: Path, log: MetricLog, run_id: str, *, dry_run: bool = False,
          resume: Path | None = None) -> str:
    """Run the job; returns the end status ('completed' or 'interrupted'). Rows go to `log`."""
    t_start = time.time()
    stop = StopFlag.install()
    notes: list[str] = []
    random.seed(job.seed)
    torch.manual_seed(job.seed)
    device = pick_device()
    precision = pick_precision(job.train.precision, device, notes)
    tc = job.train
    job_json = job.model_dump(mode="json")

    tokenizer = build_tokenizer(job, run_dir)
    data = build_datasets(job, tokenizer)
    train_set, eval_set = data.train, data.eval
    notes += data.notes + (["data: tokenized examples read from the cache"] if data.cache == "hit" else [])
    model = build_model(job, tokenizer).to(device)
    counts = count_model(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(job.optim, params, device)
    scaler = torch.amp.GradScaler("cuda") if precision.scaler else None

    state: dict = {"tokens": 0, "epoch": 0, "index": 0, "best_eval_loss": None, "last_eval_loss": None,
                   "nonfinite_skipped": 0}
    if resume is not None:
        state = load_into(resume, model, optimizer, device)
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    forward = model
    if getattr(job.backend, "compile", False):
        if device.type == "cuda":
            forward = torch.compile(model)
        else:
            notes.append("CPU: backend.compile ignored (torch.compile is used on GPUs only)")

    rows = None
    if job.data.packing:  # deterministic, so a resumed run packs the same rows
        lengths = [len(x) for x in train_set.input_ids]
        rows = pack_ffd(lengths, job.data.max_length)
        stats = packing_stats(lengths, rows, job.data.max_length)
        train_set.stats.update(packed_rows=len(rows), packed_fill_permille=round(1000 * stats["fill"]))
    per_step = tc.micro_batch_size * tc.grad_accum
    steps_per_epoch = max(1, len(rows if rows is not None else train_set) // per_step)
    max_steps = tc.max_steps or max(1, round(tc.epochs * steps_per_epoch))
    step = state.get("step", 0)
    if dry_run:
        max_steps = step + 1
    log.write(StartRow(
        run_id=run_id, step=step, backend="native", job_hash=job.hash(), job=job_json,
        hardware=device_facts(device), params_total=counts.params_total, params_trainable=counts.params_trainable,
        flops_per_token=counts.flops_per_token(job.data.max_length), precision=precision.name,
        max_steps=max_steps, tokens_per_step=per_step * job.data.max_length, notes=notes,
        data={f"train_{k}": v for k, v in train_set.stats.items()},
        resumed_from=str(resume) if resume else None))
    for note in notes:
        print(f"note: {note}", flush=True)
    if resume is not None:
        print(f"resumed from {resume} at step {step}", flush=True)
    peak = device_facts(device)["peak_flops"]
    inject = injected_steps()

    position = Position(state["epoch"], state["index"])
    if rows is not None:
        batches = packed_micro_batches(train_set, rows, tc.micro_batch_size, seed=job.seed, shuffle=job.data.shuffle,
                                       pad_id=tokenizer.pad_token_id, max_length=job.data.max_length,
                                       mask_kind=mask_kind_for(job.model.attention), position=position)
    else:
        batches = micro_batches(train_set, tc.micro_batch_size, seed=job.seed, shuffle=job.data.shuffle,
                                pad_id=tokenizer.pad_token_id, position=position)
    n_items = len(rows) if rows is not None else len(train_set)
    tokens, last_loss, status = state["tokens"], None, "completed"
    skipped, in_a_row = state["nonfinite_skipped"], 0
    window_loss = torch.zeros((), device=device)
    window_steps, window_tokens, window_flops, window_t0 = 0, 0, 0.0, time.perf_counter()
    model.train()
    freeze_setup()  # what setup built stays out of every later full collection (engine/heap.py)
    while step < max_steps:
        lr = lr_at(step, peak=job.optim.lr, total=max_steps, schedule=job.optim.schedule)
        for group in optimizer.param_groups:
            group["lr"] = lr
        micro = [next(batches) for _ in range(tc.grad_accum)]
        n_targets = torch.tensor(sum(count_targets(b) for b in micro), device=device)
        step_loss = torch.zeros((), device=device)
        for batch in micro:
            n_tokens = batch.pop("num_tokens") if rows is not None else int(batch["attention_mask"].sum())
            window_tokens += n_tokens
            # packed rows: the attention term is charged at the row length (an upper bound)
            width = job.data.max_length if rows is not None else batch["input_ids"].shape[1]
            window_flops += n_tokens * counts.flops_per_token(width)
            batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
            with autocast(device, precision):
                loss = forward(**batch, num_items_in_batch=n_targets, use_cache=False).loss
            if step + 1 in inject:
                loss = loss * float("nan")
            (scaler.scale(loss) if scaler else loss).backward()
            step_loss += loss.detach()
        if scaler:
            scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip or math.inf)
        finite = bool(torch.isfinite(step_loss) & torch.isfinite(grad_norm))  # sync
        if finite:
            in_a_row = 0
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
        else:  # drop this update; the data and the schedule still advance
            skipped, in_a_row = skipped + 1, in_a_row + 1
            print(f"step {step + 1}: non-finite loss or gradient norm; update skipped", flush=True)
            if scaler:
                scaler.update()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        window_steps += 1
        window_loss += step_loss

        if step % tc.log_every == 0 or step == max_steps or stop.requested or not finite:
            loss_value = window_loss.item() / window_steps  # sync
            last_loss = loss_value if math.isfinite(loss_value) else None
            norm = float(grad_norm)  # sync
            elapsed = time.perf_counter() - window_t0
            tokens += window_tokens
            log.write(TrainRow(
                run_id=run_id, step=step, loss=last_loss, lr=lr, grad_norm=norm if math.isfinite(norm) else None,
                tokens=tokens, tokens_per_s=window_tokens / elapsed,
                mfu=mfu(window_flops / max(window_tokens, 1), window_tokens / elapsed, peak),
                mem_gb=peak_memory_gb(device), epoch=position.epoch + position.index / n_items,
                nonfinite_skipped=skipped))
            window_loss.zero_()
            window_steps, window_tokens, window_flops, window_t0 = 0, 0, 0.0, time.perf_counter()
        if not finite and (tc.on_nonfinite == "stop" or in_a_row >= tc.nonfinite_limit):
            why = "train.on_nonfinite is stop" if tc.on_nonfinite == "stop" else \
                f"{in_a_row} in a row reached train.nonfinite_limit"
            message = (f"non-finite loss or gradient at step {step} ({why}); the run stops without saving, "
                       f"the last good checkpoint is kept")
            log.write(ErrorRow(run_id=run_id, step=step, message=message))
            raise NonFiniteStop(message, step)
        if dry_run:
            break
        if eval_set is not None and ((tc.eval_every and step % tc.eval_every == 0) or step == max_steps):
            row = evaluate(model, eval_set, job, tokenizer.pad_token_id, device, precision, run_id, step)
            log.write(row)
            state["last_eval_loss"] = row.eval_loss
        if (tc.save_every and step % tc.save_every == 0 and step < max_steps) or stop.requested:
            best = state.get("best_eval_loss")
            is_best = state["last_eval_loss"] is not None and (best is None or state["last_eval_loss"] < best)
            if is_best:
                state["best_eval_loss"] = state["last_eval_loss"]
            state.update(tokens=tokens, epoch=position.epoch, index=position.index, nonfinite_skipped=skipped,
                         job_hash=job.hash(), scaler=scaler.state_dict() if scaler else None)
            path = save_checkpoint(run_dir, step, model, optimizer, state, job_json, tc.keep_last, is_best)
            log.write(CheckpointRow(run_id=run_id, step=step, path=str(path)))
        if stop.requested:
            status = "interrupted"
            break

    if status == "completed" and not dry_run:
        final = save_final(model, tokenizer, run_dir, job)
        log.write(CheckpointRow(run_id=run_id, step=step, path=str(final)))
    synchronize(device)
    log.write(EndRow(run_id=run_id, step=step, status=status, wall_s=time.time() - t_start, tokens=tokens,
                     final_loss=last_loss, nonfinite_skipped=skipped))
    return status


@torch.no_grad()
def evaluate(model, eval_set, job: Job, pad_id: int, device, precision, run_id: str, step: int) -> EvalRow:
    """Mean loss over the eval set's target tokens (exact, not a mean of batch means)."""
    model.eval()
    total = torch.zeros((), device=device, dtype=torch.float64)
    n_total = 0
    batch_size = min(job.train.micro_batch_size, len(eval_set))
    batches = micro_batches(eval_set, batch_size, seed=0, shuffle=False, pad_id=pad_id, position=Position())
    n_batches = len(eval_set) // batch_size
    for _ in range(min(n_batches, job.train.eval_batches or n_batches)):
        batch = next(batches)
        n = count_targets(batch)
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, precision):
            loss = model(**batch, num_items_in_batch=torch.tensor(n, device=device), use_cache=False).loss
        total += loss.double() * n
        n_total += n
    model.train()
    eval_loss = total.item() / max(n_total, 1)  # sync
    return EvalRow(run_id=run_id, step=step, eval_loss=eval_loss, perplexity=math.exp(min(eval_loss, 50.0)),
                   eval_tokens=n_total)


def save_final(model, tokenizer, run_dir: Path, job: Job) -> Path:
    """The final model in Hugging Face format (safetensors + config + tokenizer) in run_dir/final.

    LoRA: the adapter goes to run_dir/adapter, and the merged model to run_dir/final when export.merged
    (the default); without it the adapter is the final model.
    """
    final = run_dir / "final"
    if job.adapter.type == "lora":
        model.save_pretrained(run_dir / "adapter", safe_serialization=True)
        if not job.export.merged:
            tokenizer.save_pretrained(run_dir / "adapter")
            return run_dir / "adapter"
        model = model.merge_and_unload()
    model.save_pretrained(final, safe_serialization=True)
    tokenizer.save_pretrained(final)
    return final
