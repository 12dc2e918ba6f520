"""A Trainer's per-step log, one step late, so that logging every step does not drain the GPU.

A Hugging Face Trainer logs by reading its loss and gradient norm back to the host (`.item()`)
right after the optimizer step it has just queued. With `logging_steps: 1` that is a full sync
every step: the GPU finishes the step and then waits while the host writes the log, fetches the
next batch and launches the next step's first kernels (~4 ms of a ~115 ms LoRA step under
Unsloth, research/results/unsloth.md, fourth session). Unsloth's hand loop pays ~0.1 ms there.

`defer_logs(trainer)` copies the Trainer's log for step N (the loss summed since the previous log,
the gradient norm, the token count) into pinned host memory behind step N's work, without a wait,
and reads it at step N+1, after that step's work is queued. The read waits on an event recorded
after the copy, so for step N only, and the GPU goes on with N+1. (Reading the device tensors
themselves there, as `float()` or `.item()`, would wait for everything queued, N+1 included: the
first version did, and so still drained the GPU once per step, found with CUDA's sync debug mode,
research/results/unsloth.md, eighth session.) The row for step N
is then written as the Trainer would have written it: the same loss, gradient norm, learning rate
and tokens, `state.global_step` and `state.epoch` as they were at step N.

No log waits when it matters: a step that saves, evaluates, stops or is the last is logged at once,
after any waiting log, so rows stay in step order, a checkpoint's row follows its step's train row
and the closing `train_loss` counts every step. A non-finite loss is seen one step late, so one
more update is applied before the run stops; nothing is saved after it (the save waits for the
log that says it failed, MetricsCallback.on_log).

For one process and a Trainer whose log is the loss alone (the unsloth backend's SFT): TRL's
trainers add per-step method metrics of their own to the log at log time, which one step late
would belong to the next step.

A speed-up only, so not REQUIRED: where an internal in TOUCHES moved, the Trainer logs as it always
did and the start row says so (hf/guard.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainhub.hf.guard import Internal, guard

TESTED = {"transformers": ("5.17.0", "5.23.0"), "trl": ("1.15.0", "1.16.0")}
"""transformers 5.23 + TRL 1.16 (the CPU tests), 5.17 + 1.15 (Unsloth's environment, the GPU tests)."""
REQUIRED = False
TOUCHES = (
    Internal("transformers.Trainer._maybe_log_save_evaluate",
             params=("tr_loss", "grad_norm", "start_time", "learning_rate"),
             source=("tr_loss -= tr_loss", "self._total_loss_scalar += tr_loss_scalar",
                     "self._globalstep_last_logged = self.state.global_step", "self.store_flos()",
                     "self.log(logs, start_time)", "self._get_learning_rate()"),
             why="DeferredLog stands in for it, resets tr_loss and keeps the same books as it does"),
    Internal("transformers.Trainer._run_epoch", source=("self._maybe_log_save_evaluate(",),
             why="the call DeferredLog takes over, on the instance"),
    Internal("transformers.Trainer.log", params=("logs", "start_time"), why="the late log is written through it"),
    Internal("transformers.TrainerControl", params=("should_log", "should_save", "should_evaluate",
                                                     "should_training_stop", "should_epoch_stop"),
             why="read to log at once where a step saves, evaluates or stops"),
)


@dataclass
class _Pending:
    step: int
    epoch: float | None
    steps: int  # optimizer steps the loss sums over (since the previous log)
    loss: Any  # device tensor
    grad_norm: Any  # device tensor, float or None
    learning_rate: float
    tokens: Any  # device tensor, int or None
    start_time: float | None
    ready: Any = None  # a CUDA event recorded after the copies to the host, or None (nothing to wait for)


def to_host(*values):
    """`values` with each CUDA tensor copied to pinned host memory behind the work queued so far, and
    the event to wait on before reading them (None when none was on a GPU). Anything else as it is."""
    import torch

    out, copied = [], False
    for v in values:
        if isinstance(v, torch.Tensor) and v.is_cuda:
            host = torch.empty(v.shape, dtype=v.dtype, pin_memory=True)
            host.copy_(v.detach(), non_blocking=True)
            v, copied = host, True
        out.append(v)
    if not copied:
        return out, None
    ready = torch.cuda.Event()
    ready.record()
    return out, ready


class DeferredLog:
    """Stands in for `trainer._maybe_log_save_evaluate` (see the module docstring). `tokens`: the
    cumulative trained-token count as a device tensor, read without a sync (count_trained_tokens)."""

    def __init__(self, trainer, tokens: Callable[[], Any] | None = None):
        self.trainer, self.tokens = trainer, tokens
        self.inner = trainer._maybe_log_save_evaluate
        self.signature = inspect.signature(self.inner)
        self.pending: _Pending | None = None
        self.deferred = 0
        """How many logs were written one step late (for the tests and the bench)."""
        trainer._maybe_log_save_evaluate = self

    def __call__(self, *args, **kwargs):
        t = self.trainer
        new_log = t.control.should_log and t.state.global_step > t._globalstep_last_logged
        self.flush()  # its on_log clears control.should_log, and may ask to stop without saving (non-finite)
        control, state = t.control, t.state
        control.should_log = new_log
        waits = control.should_save or control.should_evaluate or control.should_training_stop \
            or control.should_epoch_stop or state.global_step >= state.max_steps
        if not new_log or waits:
            return self.inner(*args, **kwargs)
        bound = self.signature.bind(*args, **kwargs)
        a = bound.arguments
        tr_loss = a["tr_loss"]
        loss = tr_loss.detach().clone()
        tr_loss -= tr_loss  # as the Trainer resets it, on the device
        rate = a.get("learning_rate")
        (loss, grad_norm, tokens), ready = to_host(loss, a["grad_norm"], self.tokens() if self.tokens is not None else None)
        self.pending = _Pending(
            step=state.global_step, epoch=state.epoch, steps=state.global_step - t._globalstep_last_logged,
            loss=loss, grad_norm=grad_norm, learning_rate=rate if rate is not None else t._get_learning_rate(),
            tokens=tokens, start_time=a.get("start_time"), ready=ready)
        t._globalstep_last_logged = state.global_step
        t.store_flos()
        control.should_log = False  # taken: the callbacks see it when it is written

    def flush(self) -> None:
        """Write the waiting log, if any: the read waits for the GPU to finish that step (its copies)."""
        p, self.pending = self.pending, None
        if p is None:
            return
        t = self.trainer
        if p.ready is not None:
            p.ready.synchronize()  # step N's copies, not what was queued after them
        loss = float(p.loss)
        logs: dict[str, Any] = {"loss": loss / p.steps}
        if p.grad_norm is not None:
            logs["grad_norm"] = float(p.grad_norm)
        logs["learning_rate"] = p.learning_rate
        if p.tokens is not None:
            logs["num_tokens"] = int(p.tokens)
        t._total_loss_scalar += loss
        state = t.state
        now = state.global_step, state.epoch
        state.global_step, state.epoch = p.step, p.epoch
        try:
            t.log(logs, p.start_time)
        finally:
            state.global_step, state.epoch = now
        self.deferred += 1


def defer_logs(trainer, tokens: Callable[[], Any] | None = None, notes: list[str] | None = None) -> DeferredLog | None:
    """Log one step late on a single-process CUDA trainer (see the module docstring); None (and the
    Trainer's own log) anywhere else, where the read costs no GPU time or would gather across ranks, and
    where the guard finds an internal moved (a note says so)."""
    args = trainer.args
    if getattr(args, "world_size", 1) != 1 or getattr(getattr(args, "device", None), "type", "cpu") != "cuda":
        return None
    if not guard("hf/deferred.py (the log one step late)", TESTED, TOUCHES, required=REQUIRED, on=(trainer,),
                 notes=notes):
        return None
    return DeferredLog(trainer, tokens)
