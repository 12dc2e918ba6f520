"""The tokens a Trainer trains on, counted on the device, for a trainer that reports no count of its own
(Unsloth's SFTTrainer: neither TRL's num_tokens nor the Trainer's own count reaches the rows there).

`count_trained_tokens(trainer)` wraps `training_step` on the instance: before each micro-batch it adds
the batch's attention-mask sum to a running count kept on the device, without a host sync. Reading the
count syncs, which the rows do only where the Trainer has just synced to log the loss (or one step late,
hf/deferred.py, which takes the device sum with `peek`). training_step sees training batches only, so
evaluation batches stay out of the count.

REQUIRED (hf/guard.py): without it the rows would report no tokens, tokens/s or MFU.
"""

from __future__ import annotations

from trainhub.hf.guard import Internal, guard

TESTED = {"transformers": ("5.17.0", "5.23.0"), "trl": ("1.15.0", "1.16.0")}
"""transformers 5.23 + TRL 1.16 (CPU tests), 5.17 + 1.15 (Unsloth's environment, GPU tests)."""
REQUIRED = True
TOUCHES = (
    Internal("transformers.Trainer.training_step", params=("model", "inputs"),
             why="wrapped on the instance; the micro-batch is its second argument"),
    Internal("transformers.Trainer._run_epoch",
             source=("self.training_step(model, inputs, num_items_in_batch)",),
             why="the loop must call training_step once per training micro-batch, with the batch"),
)


class TokenCount:
    """A running token count kept on the device (see the module docstring)."""

    def __init__(self):
        self.total = None

    def add(self, n) -> None:
        self.total = n if self.total is None else self.total + n  # a new tensor: a peeked one stays as it was

    def peek(self):
        """The count so far, as a device tensor (or 0), without a sync."""
        return 0 if self.total is None else self.total

    def __call__(self) -> int:
        return 0 if self.total is None else int(self.total)


def count_trained_tokens(trainer, notes: list[str] | None = None) -> TokenCount:
    """Count the real (attention-mask) tokens of every micro-batch the trainer trains on, in the main
    process; the TokenCount is the reader MetricsCallback takes as its tokens_fn."""
    guard("hf/tokens.py (the trained-token count)", TESTED, TOUCHES, required=REQUIRED, on=(trainer,), notes=notes)
    count = TokenCount()
    inner = trainer.training_step

    def training_step(model, inputs, *args, **kwargs):
        mask = inputs.get("attention_mask")
        if mask is not None:
            count.add(mask.detach().sum())
        return inner(model, inputs, *args, **kwargs)

    trainer.training_step = training_step
    return count
