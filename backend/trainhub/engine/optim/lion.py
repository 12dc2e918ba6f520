"""Lion (Chen et al. 2023, arXiv 2302.06675): the update is sign(beta1 m + (1 - beta1) g), every coordinate
moving by exactly lr; the momentum then decays by beta2. One state per weight (AdamW keeps two), and a
step size set by lr alone, so the paper runs it at 3-10x smaller lr and 3-10x larger weight decay than AdamW.
Built from pytorch-optimizer's Lion (foreach over each group); decoupled weight decay, not on vectors."""

from __future__ import annotations

import torch

from trainhub.engine.optim.groups import Group, role_param_groups
from trainhub.engine.optim.packages import need
from trainhub.job import Lion


def build_lion(spec: Lion, groups: dict[str, Group], device: torch.device) -> torch.optim.Optimizer:
    lib = need("lion")
    return lib.Lion(role_param_groups(spec, groups), lr=spec.lr, betas=spec.betas, weight_decouple=True)
