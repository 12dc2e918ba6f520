"""Train rows from window accumulators: what the loop measured between two rows, turned into one row.

The loop tells the window what each micro-batch held (`micro`) and what each step's loss was (`step`);
`row()` turns the window into a TrainRow and starts the next one. The step losses add up on the device
(no host sync per step); `row()` is the one place the loss and the gradient norm are read back.
Throughput is tokens since the previous row over wall time since then; MFU is the window's model FLOPs
(trainhub.metrics.flops, the same formula for every backend) over that time and the device's peak.

Several processes: the tokens are the whole step's (every rank counts them all, engine/step.py), so
tokens_per_s is global and the peak is the device's times the world; `row()` gathers each rank's peak
memory and busy time (its forward and backward, before it waits for the others) and reports the
largest memory, the spread between ranks and the slowest rank's step time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from trainhub.engine.device import peak_memory_gb
from trainhub.engine.dist import Dist
from trainhub.metrics import TrainRow
from trainhub.metrics.flops import mfu


class Telemetry:
    def __init__(self, device: torch.device, peak_flops: float | None, flops_per_token: Callable[[int], float],
                 dist: Dist = Dist("single")):
        self.device, self.flops_per_token, self.dist = device, flops_per_token, dist
        self.peak = peak_flops * dist.world if peak_flops else peak_flops
        self.loss = torch.zeros((), device=device)
        self._reset()

    def _reset(self) -> None:
        self.loss.zero_()
        self.steps, self.tokens, self.flops, self.busy_s, self.t0 = 0, 0, 0.0, 0.0, time.perf_counter()

    def micro(self, n_tokens: int, width: int) -> None:
        """A micro-batch of `n_tokens` real tokens in rows `width` wide (the attention term's length)."""
        self.tokens += n_tokens
        self.flops += n_tokens * self.flops_per_token(width)

    def busy(self, seconds: float) -> None:
        """This rank's own work in a step (several processes only)."""
        self.busy_s += seconds

    def step(self, step_loss: torch.Tensor) -> None:
        self.loss += step_loss
        self.steps += 1

    def row(self, *, run_id: str, step: int, lr: float, grad_norm: torch.Tensor, tokens: int, epoch: float,
            skipped: int) -> TrainRow:
        """The window as a row (mean loss over its steps), then a fresh window."""
        loss = self.loss.item() / max(self.steps, 1)  # sync
        norm = float(grad_norm)  # sync
        elapsed = time.perf_counter() - self.t0
        mem, spread, slowest = peak_memory_gb(self.device), None, None
        if self.dist.world > 1:
            ranks = self.dist.gather([mem, self.busy_s / max(self.steps, 1)])
            mems = [r[0] for r in ranks]
            mem, spread, slowest = max(mems), max(mems) - min(mems), max(r[1] for r in ranks)
        row = TrainRow(run_id=run_id, step=step, loss=loss if math.isfinite(loss) else None, lr=lr,
                       grad_norm=norm if math.isfinite(norm) else None, tokens=tokens,
                       tokens_per_s=self.tokens / elapsed,
                       mfu=mfu(self.flops / max(self.tokens, 1), self.tokens / elapsed, self.peak),
                       mem_gb=mem, mem_gb_spread=spread, step_s_slowest=slowest, epoch=epoch,
                       nonfinite_skipped=skipped)
        self._reset()
        return row
