"""Optimizers the job can name: a closed registry from `optim.type` to a builder.

`build_optimizer(spec, model, device)` sees the model's named parameters, splits them by role
(groups.py: embed, head, matrix, vector) and hands the groups to the optimizer's builder. Every param
group it returns carries `role` and `lr_mult`; the schedule sets the learning rate of all of them at
once with `set_lr(optimizer, lr)`, each group at lr x its multiplier. Optimizers that need more of the
loop than step() (SophiaG's Hessian estimate, schedule-free's evaluation weights) say so through the
hooks in hooks.py.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from trainhub.engine.optim.adamw import build_adamw
from trainhub.engine.optim.adamw8bit import build_adamw8bit
from trainhub.engine.optim.came import build_came
from trainhub.engine.optim.groups import Group, split_by_role
from trainhub.engine.optim.lion import build_lion
from trainhub.engine.optim.muon import build_muon
from trainhub.engine.optim.prodigy import build_prodigy
from trainhub.engine.optim.schedule_free import build_schedule_free_adamw
from trainhub.engine.optim.sophia import build_sophia

# optim.type -> builder(spec, role groups, device). The library-backed ones import their package when called.
BUILDERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adamw": build_adamw, "muon": build_muon, "lion": build_lion, "prodigy": build_prodigy, "came": build_came,
    "schedule_free_adamw": build_schedule_free_adamw, "adamw8bit": build_adamw8bit, "sophia": build_sophia}

__all__ = ["BUILDERS", "Group", "build_optimizer", "set_lr", "split_by_role"]


def build_optimizer(spec, model: torch.nn.Module, device: torch.device) -> torch.optim.Optimizer:
    if spec.type not in BUILDERS:
        raise ValueError(f"optim.type {spec.type!r} has no builder; known: {', '.join(BUILDERS)}")
    groups = split_by_role(model)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return BUILDERS[spec.type](spec, groups, device)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's learning rate for this step, scaled per group by its multiplier."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
