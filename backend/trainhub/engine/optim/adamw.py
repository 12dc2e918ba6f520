"""AdamW: torch.optim.AdamW over the role groups, fused on CUDA.

Weight decay applies to embed, head and matrix groups, never to vectors (shrinking a norm gain or a bias
toward zero fights what it is for). Each group's `lr` is the peak learning rate times its multiplier;
the loop rescales every group by the schedule (engine/optim/__init__.py, set_lr).
"""

from __future__ import annotations

import torch

from trainhub.engine.optim.groups import Group
from trainhub.job import AdamW


def build_adamw(spec: AdamW, groups: dict[str, Group], device: torch.device) -> torch.optim.Optimizer:
    param_groups = [{"params": g.params, "role": role, "lr_mult": getattr(spec.lr_mult, role),
                     "lr": spec.lr * getattr(spec.lr_mult, role),
                     "weight_decay": 0.0 if role == "vector" else spec.weight_decay}
                    for role, g in groups.items()]
    return torch.optim.AdamW(param_groups, lr=spec.lr, betas=spec.betas, eps=spec.eps, fused=device.type == "cuda")
