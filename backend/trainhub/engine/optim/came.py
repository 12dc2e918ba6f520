"""CAME (Luo et al. 2023, arXiv 2307.02047): Adafactor's memory (a matrix's second moment kept as one row and
one column of running means, m + n numbers instead of m x n) with its instability fixed by a confidence
term: the update is divided by the running deviation between the momentum and the current update, also
factored. Built from pytorch-optimizer's CAME; decoupled weight decay, not on vectors."""

from __future__ import annotations

import torch

from trainhub.engine.optim.groups import Group, role_param_groups
from trainhub.engine.optim.packages import need
from trainhub.job import Came


def build_came(spec: Came, groups: dict[str, Group], device: torch.device) -> torch.optim.Optimizer:
    lib = need("came")
    eps1, eps2 = spec.eps
    return lib.CAME(role_param_groups(spec, groups), lr=spec.lr, betas=spec.betas, weight_decouple=True,
                    clip_threshold=spec.clip_threshold, eps1=eps1, eps2=eps2)
