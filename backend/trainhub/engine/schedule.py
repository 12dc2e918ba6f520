"""Learning-rate schedules as pure functions of the step."""

from __future__ import annotations

import math

from trainhub.job import Schedule


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
