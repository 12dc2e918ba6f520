"""`train.on_nonfinite: skip` under a Hugging Face Trainer: a step whose loss or gradients are not
finite leaves the weights and the optimizer's state as they were, as in the native engine.

The Trainer itself cannot: it adds each step's loss into its running total and applies the update
before anything is logged. `SkipNonFinite(trainer, optimizer)` wraps two calls on the instances:

    training_step     the step's loss, as the Trainer adds it up, replaced by 0 when it is not
                      finite (on the device), so one bad step does not make every later log NaN;
                      whether it was finite is kept for the optimizer step
    optimizer.step    a flag on the device, 1 when that loss or the gradients' total norm is not
                      finite. torch's fused AdamW takes it as `found_inf` and leaves the weights,
                      its moments and its step count alone when it is 1, with no wait for the GPU
                      (how GradScaler skips). Any other optimizer reads the flag (one sync) and is
                      not stepped.

The data and the learning-rate schedule go on, as native's do. Each fused step's flag is copied to
pinned host memory right behind its own computation, with an event (hf/deferred.py to_host), and read
when a row is written (`read(step)`): the read waits for that step's flag only, not for the work
queued after it, so with the log one step late (hf/deferred.py) skip mode does not drain the GPU
either. `read` gives the steps skipped
since the previous row, and how many of the latest steps in a row were. MetricsCallback writes that
row's loss as null and its `nonfinite_skipped` count, and stops the run when `train.nonfinite_limit`
steps in a row were skipped. It sees them when it logs (every `train.log_every` steps), so the count
in a row may pass the limit by up to log_every - 1 steps; each of those updates was dropped too.

`inject_nonfinite(trainer)`: with `TRAINHUB_INJECT_NONFINITE` set ("5" or "2,3,4"), those steps'
losses are made NaN in training, for tests, as in the native engine (either policy; engine/step.py
reads the variable).

Both are REQUIRED (hf/guard.py): a skip whose flag the optimizer no longer reads would apply the NaN
update it was asked to drop, so a moved internal refuses the run instead.
"""

from __future__ import annotations

from typing import Any

from trainhub.hf.deferred import to_host
from trainhub.hf.guard import Internal, guard

TESTED = {"transformers": ("5.17.0", "5.23.0"), "trl": ("1.15.0", "1.16.0"), "torch": ("2.11.0", "2.13.0")}
"""transformers 5.23 + TRL 1.16 + torch 2.13 (CPU tests), 5.17 + 1.15 + 2.11 (Unsloth's environment, GPU tests)."""
REQUIRED = True
TOUCHES = (
    Internal("transformers.Trainer.training_step", params=("model", "inputs"),
             why="wrapped on the instance: its loss, zeroed where not finite, is what the Trainer adds up"),
    Internal("transformers.Trainer._run_epoch",
             source=("self.training_step(model, inputs, num_items_in_batch)", "self._tr_loss += tr_loss_step",
                     "self.optimizer.step()"),
             why="the loop must add up training_step's loss and step the optimizer through optimizer.step"),
    Internal("torch.optim.Adam.step", source=('found_inf=getattr(self, "found_inf", None)',),
             why="the fused AdamW skips its update on the device when found_inf is 1"),
)
INJECT_TOUCHES = (
    Internal("transformers.Trainer.compute_loss", params=("model", "inputs"),
             why="wrapped on the instance to make the chosen steps' losses NaN"),
)


class SkipNonFinite:
    def __init__(self, trainer, optimizer, notes: list[str] | None = None):
        import torch

        guard("hf/nonfinite.py (train.on_nonfinite: skip)", TESTED, TOUCHES, required=REQUIRED,
              on=(trainer, optimizer), notes=notes)
        self.optimizer = optimizer
        self.fused = bool(optimizer.defaults.get("fused"))
        # (the step it belongs to, 1.0 if skipped, the event its host copy waits on) since the last read
        self.flags: list[tuple[int, Any, Any]] = []
        self.in_a_row = 0
        self._loss_bad = None  # this step's micro-batches: was any loss not finite (a device bool)
        self._torch = torch
        step, training_step = optimizer.step, trainer.training_step

        def guarded_training_step(*args, **kwargs):
            loss = training_step(*args, **kwargs)
            finite = torch.isfinite(loss)
            self._loss_bad = ~finite if self._loss_bad is None else self._loss_bad | ~finite
            return torch.where(finite, loss, torch.zeros_like(loss))

        def guarded_step(*args, **kwargs):
            bad, number = self._bad(), trainer.state.global_step + 1
            if self.fused:
                (host,), ready = to_host(bad)  # behind the flag only: read() waits for no later work
                self.flags.append((number, host, ready))
                optimizer.found_inf = bad
                try:
                    return step(*args, **kwargs)
                finally:
                    del optimizer.found_inf
            skipped = bool(bad)  # sync: only where the optimizer cannot skip on the device
            self.flags.append((number, float(skipped), None))
            return None if skipped else step(*args, **kwargs)

        trainer.training_step = guarded_training_step
        optimizer.step = guarded_step

    def _bad(self):
        """1.0 (float32, on the parameters' device) when this step's loss or gradients are not finite."""
        torch = self._torch
        grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        device = grads[0].device if grads else torch.device("cpu")
        bad = torch.zeros((), dtype=torch.bool, device=device)
        if grads:
            norms = torch._foreach_norm(grads)
            bad = ~torch.isfinite(torch.stack([n.float() for n in norms]).sum())
        if self._loss_bad is not None:
            bad = bad | self._loss_bad.to(device)
        self._loss_bad = None
        return bad.float()

    def read(self, step: int) -> int:
        """How many of the steps up to `step` not read before were skipped. After it, `in_a_row` is the
        number of skipped steps at the end of the run so far (0 when the latest step read was good)."""
        mine = [(f, ready) for s, f, ready in self.flags if s <= step]
        self.flags = [entry for entry in self.flags if entry[0] > step]
        if not mine:
            return 0
        if mine[-1][1] is not None:
            mine[-1][1].synchronize()  # the latest copy; the earlier ones were queued before it
        values = [float(f) for f, _ in mine]
        for v in values:
            self.in_a_row = self.in_a_row + 1 if v else 0
        return int(sum(1 for v in values if v))


def inject_nonfinite(trainer, notes: list[str] | None = None) -> None:
    """Make the training loss NaN at the steps TRAINHUB_INJECT_NONFINITE names (1-based); nothing when unset."""
    from trainhub.engine.step import injected_steps

    steps = injected_steps()
    if not steps:
        return
    guard("hf/nonfinite.py (TRAINHUB_INJECT_NONFINITE)", TESTED, INJECT_TOUCHES, required=REQUIRED, on=(trainer,),
          notes=notes)
    compute_loss = trainer.compute_loss

    def injected(model, inputs, *args, **kwargs):
        out = compute_loss(model, inputs, *args, **kwargs)
        if model.training and trainer.state.global_step + 1 in steps:
            return (out[0] * float("nan"), *out[1:]) if isinstance(out, tuple) else out * float("nan")
        return out

    trainer.compute_loss = injected
