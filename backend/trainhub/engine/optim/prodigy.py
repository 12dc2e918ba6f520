"""Prodigy (Mishchenko and Defazio 2023, arXiv 2306.06101): Adam whose step size d is estimated while training,
from how far the weights have moved along the gradients (a lower bound on the distance to the solution that
only grows), so lr is a multiplier on d and 1.0 is the usual value. One d for all parameters: the job's
lr_mult must stay 1 (the schema says so). Built from prodigyopt, the authors' package; decoupled weight
decay, not on vectors. Note its step reads d back to the host (a sync per step)."""

from __future__ import annotations

import math

import torch

from trainhub.engine.optim.groups import Group, role_param_groups
from trainhub.engine.optim.packages import need
from trainhub.job import Prodigy


def build_prodigy(spec: Prodigy, groups: dict[str, Group], device: torch.device) -> torch.optim.Optimizer:
    lib = need("prodigy")
    return lib.Prodigy(role_param_groups(spec, groups), lr=spec.lr, betas=spec.betas, beta3=spec.beta3,
                       eps=spec.eps, decouple=True, use_bias_correction=spec.use_bias_correction,
                       safeguard_warmup=spec.safeguard_warmup, d0=spec.d0, d_coef=spec.d_coef,
                       growth_rate=spec.growth_rate if spec.growth_rate is not None else math.inf)
