"""Train rows from window accumulators: what the loop measured between two rows, turned into one row.

The loop tells the window what each micro-batch held (`micro`) and what each step's loss was (`step`);
`row()` turns the window into a TrainRow and starts the next one. The step losses add up on the device
(no host sync per step); `row()` is the one place the loss and the gradient norm are read back.
Throughput is tokens since the previous row over wall time since then; MFU is the window's model FLOPs
(trainhub.metrics.flops, the same formula for every backend) over that time and the device's peak.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from trainhub.engine.device import peak_memory_gb
from trainhub.metrics import TrainRow
from trainhub.metrics.flops import mfu


class Telemetry:
    def __init__(self, device: torch.device, peak_flops: float | None, flops_per_token: Callable[[int], float]):
        self.device, self.peak, self.flops_per_token = device, peak_flops, flops_per_token
        self.loss = torch.zeros((), device=device)
        self._reset()

    def _reset(self) -> None:
        self.loss.zero_()
        self.steps, self.tokens, self.flops, self.t0 = 0, 0, 0.0, time.perf_counter()

    def micro(self, n_tokens: int, width: int) -> None:
        """A micro-batch of `n_tokens` real tokens in rows `width` wide (the attention term's length)."""
        self.tokens += n_tokens
        self.flops += n_tokens * self.flops_per_token(width)

    def step(self, step_loss: torch.Tensor) -> None:
        self.loss += step_loss
        self.steps += 1

    def row(self, *, run_id: str, step: int, lr: float, grad_norm: torch.Tensor, tokens: int, epoch: float,
            skipped: int) -> TrainRow:
        """The window as a row (mean loss over its steps), then a fresh window."""
        loss = self.loss.item() / max(self.steps, 1)  # sync
        norm = float(grad_norm)  # sync
        elapsed = time.perf_counter() - self.t0
        row = TrainRow(run_id=run_id, step=step, loss=loss if math.isfinite(loss) else None, lr=lr,
                       grad_norm=norm if math.isfinite(norm) else None, tokens=tokens,
                       tokens_per_s=self.tokens / elapsed,
                       mfu=mfu(self.flops / max(self.tokens, 1), self.tokens / elapsed, self.peak),
                       mem_gb=peak_memory_gb(self.device), epoch=epoch, nonfinite_skipped=skipped)
        self._reset()
        return row
