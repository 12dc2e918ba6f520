"""The native training loop. Read it top to bottom: setup, restore, then step, log, evaluate, save.

Loss normalisation: every micro-batch's loss is its summed token cross-entropy divided by the number of
target tokens in the whole optimizer step (`n_targets`), so the gradients of micro-batch 2 x accumulation 2
equal those of micro-batch 4 x accumulation 1, and the logged loss is the exact mean over the step's
target tokens.

Resume: everything a step depends on is restored from the checkpoint: weights, optimizer, RNG states and
the TrainState (step, tokens, data position, loss scaler; engine/state.py). The learning rate is a pure
function of the step, so a resumed run takes the same steps as an uninterrupted one. The last step is
checkpointed too, so a finished run can be extended (`--resume --set train.max_steps=N`).

Several processes (torchrun; engine/dist.py): every rank runs this same loop. Each step draws
grad_accum x world micro-batches from the one seeded order and each rank trains on its share
(engine/step.py), so the global batch is micro_batch_size x grad_accum x world, the data position is the
same on every rank, and a checkpoint resumes exactly on any number of processes that keeps that global
batch. Rows are written by rank 0 (the others write only the error row of their own failure); a stop
request counts when any rank has one, so all stop at the same step.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import torch

from trainhub.engine.checkpoint import CheckpointError, load_into, save_checkpoint, tied_names
from trainhub.engine.checkpoint_dcp import full_weights, is_sharded, load_sharded, save_sharded
from trainhub.engine.device import device_facts, pick_device, pick_precision, synchronize
from trainhub.engine.dist import Dist, close, start
from trainhub.engine.heap import freeze_setup
from trainhub.engine.losswatch import LossDiverged, Watch
from trainhub.engine.models import build_model, merge_onto_base
from trainhub.engine.optim import set_lr
from trainhub.engine.optim.hooks import evaluation_weights
from trainhub.engine.profile import StepProfiler
from trainhub.engine.schedule import lr_at
from trainhub.engine.setup import Setup, build
from trainhub.engine.state import TrainState
from trainhub.engine.step import NonFiniteStop, evaluate, nonfinite_verdict, train_step
from trainhub.engine.stop import StopFlag
from trainhub.engine.telemetry import Telemetry
from trainhub.export.hf import save_final
from trainhub.job import Job
from trainhub.metrics import CheckpointRow, EndRow, ErrorRow, MetricLog, StartRow, WarningRow

__all__ = ["LossDiverged", "NonFiniteStop", "train"]


def train(job: Job, run_dir: Path, log: MetricLog, run_id: str, *, dry_run: bool = False,
          resume: Path | None = None) -> str:
    """Run the job; returns the end status ('completed' or 'interrupted'). Rows go to `log`."""
    # --- setup: seeds, device, precision, tokenizer, data, model, loss, optimizer
    t_start, stop, notes = time.time(), StopFlag.install(), []
    random.seed(job.seed)
    torch.manual_seed(job.seed)
    d = start(job.distributed)  # before the device: a GPU rank binds to its own GPU
    device = pick_device()
    precision = pick_precision(job.train.precision, device, notes, compiled=getattr(job.backend, "compile", False))
    s: Setup = build(job, run_dir, device, precision, notes, d)
    tc, global_batch = job.train, job.train.micro_batch_size * job.train.grad_accum * d.world

    # --- restore
    state = TrainState()
    if resume is not None:
        saved = restore(resume, s, device)
        state = TrainState.from_json(saved)
        if s.scaler is not None and state.scaler:
            s.scaler.load_state_dict(state.scaler)
        if saved.get("global_batch", global_batch) != global_batch:
            raise CheckpointError(f"{resume} was trained with a global batch of {saved['global_batch']} sequences; "
                                  f"this run's is {global_batch} (micro_batch_size x grad_accum x processes): "
                                  f"keep the product when changing distributed.nproc_per_node (e.g. double "
                                  f"train.grad_accum when halving the processes)")
    max_steps = state.step + 1 if dry_run else s.total_steps
    batches = s.batches(state)
    loss_fn = s.inject_nonfinite(s.loss_fn, state)  # a testing hook; s.loss_fn itself in normal runs
    profiler = StepProfiler(tc.profile, run_dir, device, d.main, first=state.step + 1, last=max_steps, notes=notes)
    watch = Watch(tc.loss_watch) if tc.loss_watch else None

    log.write(StartRow(
        run_id=run_id, step=state.step, backend="native", job_hash=job.hash(), job=job.model_dump(mode="json"),
        hardware=device_facts(device), params_total=s.counts.params_total,
        params_trainable=s.counts.params_trainable, flops_per_token=s.counts.flops_per_token(job.data.max_length),
        precision=precision.name, max_steps=max_steps, tokens_per_step=s.tokens_per_step, notes=notes,
        data={f"train_{k}": v for k, v in s.train_set.stats.items()}, resumed_from=str(resume) if resume else None))
    for note in notes if d.main else ():
        print(f"note: {note}", flush=True)
    if resume is not None and d.main:
        print(f"resumed from {resume} at step {state.step}", flush=True)
    telemetry = Telemetry(device, device_facts(device)["peak_flops"], s.counts.flops_per_token, d)
    status, last_loss, in_a_row = "completed", None, 0
    s.model.train()
    freeze_setup()  # what setup built stays out of every later full collection (engine/heap.py)

    while state.step < max_steps:
        # --- step
        lr = lr_at(state.step, peak=job.optim.lr, total=max_steps, schedule=job.schedule)
        set_lr(s.optimizer, lr)
        profiler.before(state.step + 1)
        micro = [next(batches) for _ in range(tc.grad_accum * d.world)]  # the whole step; each rank trains its share
        step_loss, grad_norm, finite = train_step(s, loss_fn, micro, telemetry, state)
        stopping = d.any(stop.requested)
        state.step += 1
        state.epoch, state.index = batches.position.epoch, batches.position.index
        if not finite:
            state.nonfinite_skipped, in_a_row = state.nonfinite_skipped + 1, in_a_row + 1
            if d.main:  # every rank skips the same step (the check is on the reduced loss)
                print(f"step {state.step}: non-finite loss or gradient norm; update skipped", flush=True)
        else:
            in_a_row = 0
        telemetry.step(step_loss)

        # --- log
        if state.step % tc.log_every == 0 or state.step == max_steps or stopping or not finite:
            row = telemetry.row(run_id=run_id, step=state.step, lr=lr, grad_norm=grad_norm, tokens=state.tokens,
                                epoch=state.epoch + state.index / s.epoch_items, skipped=state.nonfinite_skipped)
            last_loss = row.loss
            log.write(row)
            verdict = watch.check(state.step, row.loss) if watch else None
            if verdict and tc.loss_watch.action == "warn":
                if d.main:
                    print(f"warning: {verdict}", flush=True)
                    log.write(WarningRow(run_id=run_id, step=state.step, source="loss_watch", message=verdict))
            elif verdict:  # every rank reads the same reduced loss, so every rank stops here alike
                message = f"{verdict}; the run stops, the last checkpoint is kept"
                if d.main:
                    log.write(ErrorRow(run_id=run_id, step=state.step, message=message))
                raise LossDiverged(message, state.step)
        profiler.after(state.step, last=state.step == max_steps or stopping)
        why = nonfinite_verdict(finite, tc, in_a_row)
        if why:
            message = (f"non-finite loss or gradient at step {state.step} ({why}); the run stops without saving, "
                       f"the last good checkpoint is kept")
            if d.main:  # every rank stops here alike; one row says why
                log.write(ErrorRow(run_id=run_id, step=state.step, message=message))
            raise NonFiniteStop(message, state.step)
        if dry_run:
            break

        # --- eval
        last = state.step == max_steps
        if s.eval_set is not None and ((tc.eval_every and state.step % tc.eval_every == 0) or last):
            row = evaluate(s, run_id, state.step)
            log.write(row)
            state.note_eval(row.eval_loss)

        # --- save (the last step too: it is what final/ is made from, and a finished run can be extended)
        if (tc.save_every and state.step % tc.save_every == 0) or stopping or last:
            state.scaler = s.scaler.state_dict() if s.scaler else None
            is_best = state.claim_best()
            saved = {**state.to_json(), "job_hash": job.hash(), "global_batch": global_batch}
            args = (run_dir, state.step, s.model, s.optimizer, saved, job.model_dump(mode="json"), tc.keep_last,
                    is_best)
            path = save_sharded(*args, d) if d.active else save_checkpoint(*args)
            if path is not None:  # rank 0
                log.write(CheckpointRow(run_id=run_id, step=state.step, path=str(path)))
        if stopping:
            status = "interrupted"
            break

    # --- end
    if status == "completed" and not dry_run:
        with evaluation_weights(s.optimizer):  # schedule-free: the average is the model
            final = write_final(s, run_dir, job, d)
        if final is not None:
            log.write(CheckpointRow(run_id=run_id, step=state.step, path=str(final)))
    synchronize(device)
    log.write(EndRow(run_id=run_id, step=state.step, status=status, wall_s=time.time() - t_start,
                     tokens=state.tokens, final_loss=last_loss, nonfinite_skipped=state.nonfinite_skipped))
    close(d)
    return status


def restore(path: Path, s: Setup, device: torch.device) -> dict:
    """Weights, optimizer and RNG from a checkpoint of either kind (engine/checkpoint_dcp.py says which
    resumes where); returns its state.json."""
    if is_sharded(path):
        return load_sharded(path, s.model, s.optimizer)
    if s.dist.strategy == "fsdp2":
        raise CheckpointError(f"{path} was written by a single process (safetensors); strategy fsdp2 resumes "
                              f"from checkpoints of ddp or fsdp2 runs only (not yet from this kind): resume it "
                              f"with strategy ddp or single")
    return load_into(path, s.model, s.optimizer, device)


def write_final(s: Setup, run_dir: Path, job: Job, d: Dist) -> Path | None:
    """final/ as a plain HF folder, written by rank 0. FSDP2: the shards are gathered on every rank and
    loaded into a fresh copy of the model on rank 0, which saves it as one process would."""
    model = s.model
    if d.strategy == "fsdp2":
        weights = full_weights(s.model)  # every rank takes part
        if d.main:
            model = build_model(job, s.tokenizer)
            missing, unexpected = model.load_state_dict(weights, strict=False)
            if unexpected or set(missing) - tied_names(model):
                raise CheckpointError(f"final/: the gathered weights do not fit the model (missing {missing[:3]}, "
                                      f"unexpected {unexpected[:3]})")
    if d.main:
        merge = merge_onto_base(job, s.tokenizer, run_dir / "adapter") if job.adapter.type == "qlora" else None
        final = save_final(model, s.tokenizer, run_dir, job, merge)
    else:
        final = None
    d.barrier()
    return final
