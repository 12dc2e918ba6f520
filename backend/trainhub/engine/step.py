"""One optimizer step, one evaluation, and the non-finite policy: the loop's hot path, kept apart so the
loop itself reads in one screen.

`train_step` runs the step's micro-batches forward and backward (each loss already divided by the step's
target count, so accumulation is exact), unscales fp16 gradients, clips, and steps the optimizer only when
the loss and the gradient norm are finite. That one check is the step's only host sync with one process;
several add two (the rank's busy time for the row, and the loop's agreement on a stop request).
"""

from __future__ import annotations

import contextlib
import math
import os
import time

import torch

from trainhub.data.batches import Position, count_targets, micro_batches
from trainhub.engine.device import autocast, synchronize
from trainhub.engine.models import head_weight, hidden_states
from trainhub.engine.optim.hooks import estimate_hessian, evaluation_weights, hessian_due
from trainhub.metrics import EvalRow

# Testing hook: steps (1-based, comma-separated) whose loss is multiplied by NaN, to exercise
# train.on_nonfinite end to end, in the native engine (Setup.inject_nonfinite) and under a Trainer
# (hf/nonfinite.py). Never set in normal use.
INJECT_NONFINITE = "TRAINHUB_INJECT_NONFINITE"


def injected_steps() -> set[int]:
    """The steps TRAINHUB_INJECT_NONFINITE names; empty when it is unset."""
    return {int(s) for s in os.environ.get(INJECT_NONFINITE, "").split(",") if s.strip()}


# Testing hook: "RANK:STEP" makes that rank raise at the start of that step (1-based), to show that a rank
# that dies takes the whole job down with an error row naming it (tests/integration/test_distributed.py).
INJECT_RANK_FAILURE = "TRAINHUB_INJECT_RANK_FAILURE"


def fail_if_injected(rank: int, step: int) -> None:
    spec = os.environ.get(INJECT_RANK_FAILURE, "")
    if spec and spec == f"{rank}:{step}":
        raise RuntimeError(f"injected failure at step {step} ({INJECT_RANK_FAILURE})")


class NonFiniteStop(RuntimeError):
    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


def train_step(s, loss_fn, micro: list[dict], telemetry, state) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Forward and backward over this process's share of the step's micro-batches, then clip and step.
    Returns (loss of the step on the device, gradient norm before clipping, whether the update was applied).

    `micro` is the whole step, every process's micro-batches: each process draws the same seeded order, so
    the step's target count and tokens are known everywhere without a collective, and takes every
    world-th one from its rank on (engine/dist.py). Each loss is divided by the whole step's target count
    and multiplied by the world, because DDP and FSDP2 average gradients over the processes: the update is
    then the one a single process makes over all the micro-batches. With one process nothing changes."""
    device, packed, d = s.device, s.rows is not None, s.dist
    fail_if_injected(d.rank, state.step + 1)
    n_targets = torch.tensor(sum(count_targets(b) for b in micro), device=device)
    for batch in micro:
        n_tokens = batch.pop("num_tokens") if packed else int(batch["attention_mask"].sum())
        # packed rows: the attention term is charged at the row length (an upper bound)
        telemetry.micro(n_tokens, s.job.data.max_length if packed else batch["input_ids"].shape[1])
        state.tokens += n_tokens
    mine = micro[d.rank::d.world]
    step_loss = torch.zeros((), device=device)
    t0 = time.perf_counter()
    for i, batch in enumerate(mine):
        batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        with gradient_sync(loss_fn, last=i == len(mine) - 1):
            with autocast(device, s.precision):
                loss = loss_fn(batch, n_targets)
            scaled = loss * d.world if d.world > 1 else loss
            (s.scaler.scale(scaled) if s.scaler else scaled).backward()
        step_loss += loss.detach()
    if d.world > 1:  # this rank's own work, before it waits for the others: the slowest rank's shows in the row
        synchronize(device)  # sync
        telemetry.busy(time.perf_counter() - t0)
    d.all_sum(step_loss)  # the step's mean loss over every process's targets
    if s.scaler:
        s.scaler.unscale_(s.optimizer)
    max_norm = s.job.train.grad_clip or math.inf
    fold = s.scaler is None and math.isfinite(max_norm) and folds_clip(s.optimizer)
    grad_norm = clip_gradients(s.params, max_norm, apply=not fold)
    finite = bool(torch.isfinite(step_loss) & torch.isfinite(grad_norm))  # sync
    if finite:
        if s.scaler:
            s.scaler.step(s.optimizer)
        elif fold:  # the clip's scale divides the gradients inside the fused step (folds_clip)
            s.optimizer.grad_scale = ((grad_norm + 1e-6) / max_norm).clamp(min=1.0)
            try:
                s.optimizer.step()
            finally:
                del s.optimizer.grad_scale
        else:
            s.optimizer.step()
    if s.scaler:
        s.scaler.update()
    s.optimizer.zero_grad(set_to_none=True)
    if finite and hessian_due(s.optimizer, state.step + 1):  # SophiaG, every k steps (engine/optim/hooks.py)
        estimate_hessian(s.optimizer, lambda b: hidden_states(s.model, b), head_weight(s.model), batch,
                         lambda: autocast(device, s.precision))
    return step_loss, grad_norm, finite


def clip_gradients(params: list[torch.Tensor], max_norm: float, apply: bool = True) -> torch.Tensor:
    """Scale the gradients so their global L2 norm is at most `max_norm`; returns the norm before (a plain
    tensor). torch's clip_grad_norm_, except over FSDP2's shards on a 1-D mesh: there each rank sums the
    squares of its local shards, one all-reduce adds them, and the scale is applied to the local shards,
    which is the same arithmetic without DTensor dispatch per tensor (5.3 against 1.9 ms of host time for
    146 tensors, CPU; the norm the loop then waits on). `apply` False only measures: the caller's fused
    step divides by the scale instead (folds_clip)."""
    from torch.distributed.tensor import DTensor, Shard

    grads = [p.grad for p in params if p.grad is not None]
    sharded = grads and all(isinstance(g, DTensor) and g.device_mesh.ndim == 1 and isinstance(g.placements[0], Shard)
                            for g in grads)
    if not sharded or len({g.device_mesh for g in grads}) != 1:
        if apply:
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        else:
            norm = torch.nn.utils.get_total_norm(grads)
        return norm.full_tensor() if isinstance(norm, DTensor) else norm
    local = [g._local_tensor for g in grads]
    squares = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(local)).float()).square()
    torch.distributed.all_reduce(squares, group=grads[0].device_mesh.get_group())
    norm = squares.sqrt()
    if apply:
        torch._foreach_mul_(local, (max_norm / (norm + 1e-6)).clamp(max=1.0).to(local[0].dtype))
    return norm


def folds_clip(optimizer) -> bool:
    """Whether the clip can ride inside the optimizer's step: torch's fused Adam/AdamW kernels divide each
    gradient by `optimizer.grad_scale` as they read it (the hook GradScaler uses), so setting it to
    max(1, norm / max_norm) is the clip without its own pass over the gradients (one read and one write of
    every fp32 gradient: ~10 GB at the 1B shape, ~3 ms of an H100's ~150 ms step). Same update to fp32
    rounding (a division by the scale, not a multiplication by its inverse: tests/unit/test_step_clip.py)."""
    return isinstance(optimizer, torch.optim.Adam | torch.optim.AdamW) and all(
        g.get("fused") for g in optimizer.param_groups)


def gradient_sync(wrapped, last: bool):
    """Reduce gradients only after the step's last micro-batch: DDP's no_sync before it, FSDP2's
    set_requires_gradient_sync; a plain module accumulates as it always did."""
    if hasattr(wrapped, "no_sync"):  # DDP
        return contextlib.nullcontext() if last else wrapped.no_sync()
    if hasattr(wrapped, "set_requires_gradient_sync"):  # FSDP2
        wrapped.set_requires_gradient_sync(last)
    return contextlib.nullcontext()


def nonfinite_verdict(finite: bool, tc, in_a_row: int) -> str | None:
    """Why the run must stop after a non-finite step, or None (finite, or skipped within the limit)."""
    if finite:
        return None
    if tc.on_nonfinite == "stop":
        return "train.on_nonfinite is stop"
    if in_a_row >= tc.nonfinite_limit:
        return f"{in_a_row} in a row reached train.nonfinite_limit"
    return None


@torch.no_grad()
def evaluate(s, run_id: str, step: int) -> EvalRow:
    """Mean loss over the eval set's target tokens (exact, not a mean of batch means), at the optimizer's
    evaluation weights (schedule-free: the average; engine/optim/hooks.py)."""
    with evaluation_weights(s.optimizer):
        return _evaluate(s, run_id, step)


def _evaluate(s, run_id: str, step: int) -> EvalRow:
    s.model.eval()
    eval_set, device = s.eval_set, s.device
    total = torch.zeros((), device=device, dtype=torch.float64)
    n_total = 0
    batch_size = min(s.job.train.micro_batch_size, len(eval_set))
    batches = micro_batches(eval_set, batch_size, seed=0, shuffle=False, pad_id=s.tokenizer.pad_token_id,
                            position=Position())
    n_batches = len(eval_set) // batch_size
    for _ in range(min(n_batches, s.job.train.eval_batches or n_batches)):
        batch = next(batches)
        n = count_targets(batch)
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, s.precision):
            loss = s.loss_fn(batch, torch.tensor(n, device=device))
        total += loss.double() * n
        n_total += n
    s.model.train()
    eval_loss = total.item() / max(n_total, 1)  # sync
    return EvalRow(run_id=run_id, step=step, eval_loss=eval_loss, perplexity=math.exp(min(eval_loss, 50.0)),
                   eval_tokens=n_total)
