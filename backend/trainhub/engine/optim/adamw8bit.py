"""8-bit AdamW (Dettmers et al. 2022, arXiv 2110.02861): both running averages stored as 8-bit codes of a
dynamic (non-linear) quantization map, block-wise: every 256 values share one float32 absmax, so an outlier
costs precision only in its own block. State: 2 bytes per weight instead of 8 (~75% less); tensors under
min_8bit_size elements keep 32-bit states. Built from bitsandbytes (its CPU build runs the same optimizer,
so the tests run here); decoupled weight decay, not on vectors."""

from __future__ import annotations

import torch

from trainhub.engine.optim.groups import Group, role_param_groups
from trainhub.engine.optim.packages import need
from trainhub.job import AdamW8bit


def build_adamw8bit(spec: AdamW8bit, groups: dict[str, Group], device: torch.device) -> torch.optim.Optimizer:
    lib = need("adamw8bit")
    return lib.optim.AdamW8bit(role_param_groups(spec, groups), lr=spec.lr, betas=spec.betas, eps=spec.eps,
                               min_8bit_size=spec.min_8bit_size)
