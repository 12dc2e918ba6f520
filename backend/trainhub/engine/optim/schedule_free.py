"""Schedule-free AdamW (Defazio et al. 2024, arXiv 2405.15682): the gradient is taken at y, a blend of an
SGD-like iterate z and the running average x of the z's; x is the model to evaluate and keep. Averaging
replaces the decay schedule (warm up, then hold lr constant). Built from schedulefree, the authors' package.

The weights the module holds are y while training and must be x for evaluation and the final save: the
optimizer's eval() and train() swap them (engine/optim/hooks.py calls them around evaluation and the final
save; transformers' Trainer does the same for trl). Checkpoints hold y with the optimizer state, so a resume
continues exactly."""

from __future__ import annotations

import torch

from trainhub.engine.optim.groups import Group, role_param_groups
from trainhub.engine.optim.packages import need
from trainhub.job import ScheduleFreeAdamW


def build_schedule_free_adamw(spec: ScheduleFreeAdamW, groups: dict[str, Group],
                              device: torch.device) -> torch.optim.Optimizer:
    lib = need("schedule_free_adamw")
    optimizer = lib.AdamWScheduleFree(role_param_groups(spec, groups), lr=spec.lr, betas=spec.betas, eps=spec.eps,
                                      warmup_steps=0, r=spec.r, weight_lr_power=spec.weight_lr_power)
    optimizer.train()  # its step refuses to run in eval mode; the warmup is the job's schedule (warmup_steps 0 here)
    return optimizer
