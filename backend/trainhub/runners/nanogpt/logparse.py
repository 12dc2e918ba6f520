"""nanoGPT's stdout, line by line, turned into the common metric rows.

The lines (karpathy/nanoGPT@3adf61e train.py, printed by rank 0):

    step {iter}: train loss {:.4f}, val loss {:.4f}          an evaluation, before iteration `iter`
    iter {iter}: loss {:.4f}, time {ms:.2f}ms, mfu {pct:.2f}%   after iteration `iter` (log_interval)
    saving checkpoint to {out_dir}                           ckpt.pt is being written

`loss` is the last micro-batch's loss times the accumulation (nanoGPT's approximation of the step's
mean). `mfu` is -100.00% for the first five iterations of a process (its running mean starts at -1),
and is relative to an A100's 312 TFLOP/s, so trainhub does not use it: it recomputes tokens/s from
batch x block x accumulation over the printed iteration time, and MFU from its own FLOPs per token and
the detected GPU's peak (trainhub.metrics.flops). The time includes an evaluation that ran at the top
of the iteration, and the first iteration includes compilation.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from trainhub.metrics import EvalRow, TrainRow
from trainhub.metrics.flops import mfu

_NUM = r"(-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|-?nan|-?inf)"
ITER = re.compile(rf"^iter (\d+): loss {_NUM}, time {_NUM}ms, mfu {_NUM}%$")
EVAL = re.compile(rf"^step (\d+): train loss {_NUM}, val loss {_NUM}$")
SAVE = re.compile(r"^saving checkpoint to (.+)$")


@dataclass(frozen=True)
class Iter:
    it: int
    loss: float
    ms: float
    mfu_pct: float | None
    """nanoGPT's own MFU in percent of an A100's peak; None while it warms up (-100%)."""


@dataclass(frozen=True)
class Eval:
    it: int
    train_loss: float
    val_loss: float


@dataclass(frozen=True)
class Save:
    out_dir: str


def parse(line: str) -> Iter | Eval | Save | None:
    line = line.strip()
    if m := ITER.match(line):
        pct = float(m[4])
        return Iter(int(m[1]), float(m[2]), float(m[3]), None if pct < 0 else pct)
    if m := EVAL.match(line):
        return Eval(int(m[1]), float(m[2]), float(m[3]))
    if m := SAVE.match(line):
        return Save(m[1])
    return None


@dataclass
class RowMaker:
    """Rows from parsed lines. Step = updates completed: `iter N` ends update N+1; `step N` evaluates
    after N updates. Iterations past max_steps (nanoGPT's one unsaved extra, see config.max_iters)
    give no row."""

    run_id: str
    max_steps: int
    tokens_per_step: int
    flops_per_token: float
    peak: float | None
    devices: int
    lr_at: Callable[[int], float]
    train_tokens: int
    eval_tokens: int

    def train(self, ev: Iter) -> TrainRow | None:
        step = ev.it + 1
        if step > self.max_steps:
            return None
        tokens = step * self.tokens_per_step
        per_s = self.tokens_per_step / max(ev.ms / 1000, 1e-9)
        return TrainRow(run_id=self.run_id, step=step, loss=ev.loss if math.isfinite(ev.loss) else None,
                        lr=self.lr_at(ev.it), grad_norm=None, tokens=tokens, tokens_per_s=per_s,
                        mfu=mfu(self.flops_per_token, per_s, self.peak, self.devices), mem_gb=None,
                        epoch=tokens / max(self.train_tokens, 1))

    def eval(self, ev: Eval) -> EvalRow:
        return EvalRow(run_id=self.run_id, step=ev.it, eval_loss=ev.val_loss,
                       perplexity=math.exp(min(ev.val_loss, 50.0)), eval_tokens=self.eval_tokens)
