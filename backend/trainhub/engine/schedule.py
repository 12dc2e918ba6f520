"""Learning-rate schedules as pure functions of the step, and the run's length in steps."""

from __future__ import annotations

import math

from trainhub.job import Job, Schedule


def lr_at(step: int, *, peak: float, total: int, schedule: Schedule) -> float:
    """Learning rate for optimizer step `step` (0-based) of `total`.

    Linear warmup to `peak` over warmup_steps (step 0 gets peak/warmup), then a
    cosine, linear or flat path from peak to peak*min_lr_ratio at the last step.
    """
    warmup = schedule.warmup_steps
    if step < warmup:
        return peak * (step + 1) / warmup
    floor = peak * schedule.min_lr_ratio
    span = max(1, total - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)
    if schedule.decay == "constant":
        return peak
    if schedule.decay == "linear":
        return peak - (peak - floor) * progress
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def total_steps(job: Job, items: int, world: int = 1) -> int:
    """Optimizer steps of the run: train.max_steps, or train.epochs over `items` (examples, packed rows or
    prompts; an incomplete last batch of an epoch is dropped; a GRPO prompt gives group_size completions), a
    step taking micro_batch_size x grad_accum x `world` items (every process's share).
    Every backend that trains in trainhub's own process counts its steps here."""
    tc = job.train
    if tc.max_steps:
        return tc.max_steps
    per_item = job.method.group_size if job.method.type == "grpo" else 1
    return max(1, round(tc.epochs * max(1, items * per_item // (tc.micro_batch_size * tc.grad_accum * world))))
