"""AdamW: torch.optim.AdamW over the role groups, fused on CUDA.

Weight decay applies to embed, head and matrix groups, never to vectors (shrinking a norm gain or a bias
toward zero fights what it is for). Each group's `lr` is the peak learning rate times its multiplier;
the loop rescales every group by the schedule (engine/optim/__init__.py, set_lr).
"""

from __future__ import annotations

import torch

from trainhub.engine.optim.groups import Group, role_param_groups
from trainhub.job import AdamW


def build_adamw(spec: AdamW, groups: dict[str, Group], device: torch.device) -> torch.optim.Optimizer:
    return torch.optim.AdamW(role_param_groups(spec, groups), lr=spec.lr, betas=spec.betas, eps=spec.eps,
                             fused=device.type == "cuda")
