"""What an optimizer may ask of the loop beyond `step()`: two optional hooks, found by name on the optimizer.

    needs_hessian(step) -> bool, update_hessian(n_tokens)
        SophiaG (sophia.py): after optimizer step `step` (1-based) returns True, the loop runs
        `estimate_hessian` on that step's last micro-batch: labels sampled from the model's own logits, the
        mean loss at them backward, the squared gradients folded into the optimizer's estimate.
    eval(), train()
        Schedule-free AdamW (schedule_free.py): the module's weights are the training point y; eval() swaps
        in the average x, train() swaps back. The loop wraps evaluation and the final save in
        `evaluation_weights(optimizer)`. (transformers' Trainer calls the same two methods for trl.)

An optimizer without them (every other) makes both hooks no-ops: `hessian_due` is False, the context manager
does nothing. engine/step.py and engine/train.py call them; nothing else in the loop knows which optimizer runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import torch
import torch.nn.functional as F


def hessian_due(optimizer: torch.optim.Optimizer, step: int) -> bool:
    needs = getattr(optimizer, "needs_hessian", None)
    return needs is not None and needs(step)


def estimate_hessian(optimizer: torch.optim.Optimizer, hidden_of: Callable[[dict], torch.Tensor],
                     head: torch.Tensor, batch: dict, autocast: Callable[[], AbstractContextManager]) -> None:
    """One Gauss-Newton-Bartlett estimate (sophia.py) on `batch` (on the device, with labels): the model's
    next-token distribution sampled at every target position, the mean cross-entropy at those samples
    backward, the gradients handed to optimizer.update_hessian and cleared. Draws from torch's RNG, which
    checkpoints restore, so a resumed run samples the same labels. `hidden_of(batch)` gives the final hidden
    states (engine/models.hidden_states) and `head` the output projection, as the loss seam takes them: only
    the target positions' logits are made."""
    targets = batch["labels"][:, 1:] != -100
    with autocast():
        logits = (hidden_of(batch)[:, :-1][targets] @ head.T).float()
    sampled = torch.multinomial(torch.softmax(logits.detach(), dim=-1), 1).squeeze(-1)
    F.cross_entropy(logits, sampled).backward()
    optimizer.update_hessian(n_tokens=int(targets.sum()))  # sync, every hessian_every steps only
    optimizer.zero_grad(set_to_none=True)


@contextmanager
def evaluation_weights(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """The weights to evaluate and save while inside (schedule-free: the average x), the training weights after,
    bit for bit: train() recomputes y from x and z, which rounds differently from the y that went in, so a run
    that evaluated at step N would drift from one that did not (and a resume from its straight twin). The
    training weights are copied aside for the evaluation (one more copy of the weights, briefly) and put back."""
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer  # accelerate's wrapper (the Trainer's) has eval/train for every optimizer
    swap = callable(getattr(optimizer, "eval", None)) and callable(getattr(optimizer, "train", None))
    if not swap:
        yield
        return
    params = [p for group in optimizer.param_groups for p in group["params"]]
    with torch.no_grad():
        kept = [p.detach().clone() for p in params]
    optimizer.eval()
    try:
        yield
    finally:
        optimizer.train()
        with torch.no_grad():
            for p, k in zip(params, kept, strict=True):  # one copy each: DTensors (FSDP2) have no _foreach_copy_
                p.copy_(k)
