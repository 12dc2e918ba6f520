"""AdamW: torch.optim.AdamW over the role groups, fused on CUDA.

Weight decay applies to embed, head and matrix groups, never to vectors (shrinking a norm gain or a bias
toward zero fights what it is for). Each group's `lr` is the peak learning rate times its multiplier;
the loop rescales every group by the schedule (engine/optim/__init__.py, set_lr).

Under FSDP2 the parameters, gradients and moments are DTensors, and torch's step dispatches each of its
list ops through DTensor: 3.5x the host time of the same fused step over plain tensors (8.1 against 2.3 ms
for a 16-layer model's 146 tensors, research/bench_fsdp2_optim_host.py), time the GPU waits for once the
step's gradient-norm check has synchronised. AdamW is element-wise, so each rank stepping its own shards as
plain tensors is the same update: `ShardLocalAdamW` hands torch's kernels the local tensors, and keeps the
moments themselves DTensors, so checkpoints (torch.distributed.checkpoint) see what they always saw.
"""

from __future__ import annotations

import torch

from trainhub.engine.optim.groups import Group, role_param_groups
from trainhub.job import AdamW


class ShardLocalAdamW(torch.optim.AdamW):
    """torch.optim.AdamW whose kernels step each DTensor's local shard (module docstring); on plain tensors it
    is torch's AdamW unchanged."""

    def _init_group(self, group, *lists):
        # torch fills the lists it passes to its kernels (params, grads, moments, steps; their number varies
        # with the torch release); the DTensors among them become their local shards, the state stays as is
        has_complex = super()._init_group(group, *lists)
        for items in lists:
            if isinstance(items, list):
                items[:] = [getattr(t, "_local_tensor", t) for t in items]
        return has_complex


def build_adamw(spec: AdamW, groups: dict[str, Group], device: torch.device) -> torch.optim.Optimizer:
    return ShardLocalAdamW(role_param_groups(spec, groups), lr=spec.lr, betas=spec.betas, eps=spec.eps,
                             fused=device.type == "cuda")
