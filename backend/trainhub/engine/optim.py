"""Optimizers the job can name. One for now; a closed registry as more arrive."""

from __future__ import annotations

import torch

from trainhub.job import AdamW


def build_optimizer(spec: AdamW, params: list[torch.nn.Parameter], device: torch.device) -> torch.optim.Optimizer:
    """AdamW, weight decay on matrices only (norm gains and biases are not shrunk toward zero)."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    return torch.optim.AdamW(groups, lr=spec.lr, betas=spec.betas, eps=spec.eps,
                             fused=device.type == "cuda")
