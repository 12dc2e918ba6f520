"""Liger-Kernel's ops behind the same signatures as ours (`backend.kernels: liger`), for comparison runs.

Liger (github.com/linkedin/Liger-Kernel, `pip install 'trainhub[liger]'`) ships Triton kernels for the
same four ops. Its layouts differ from the model's, so this file adapts, nothing more:

- RMSNorm in Liger's "llama" casting mode (statistics in float32, cast back before the weight), not in
  place. One difference: Liger returns x's dtype where eager returns the promoted dtype (float32 under
  autocast with float32 master weights); the next matmul casts to bf16 either way.
- RoPE takes q, k as [B, heads, T, D]: the model's [B, T, heads, D] are passed as transposed views.
  Liger turns them in place (its inputs change; the projections' backward does not need them).
- The fused linear + cross-entropy gets inputs already cast to the compute dtype (autograd carries the
  gradients back to float32 masters), sums over tokens, and the sum is divided by n here; its weight
  gradient is accumulated in float32 (accum_dtype).
"""

from __future__ import annotations

import torch
from liger_kernel.transformers.functional import (
    liger_fused_linear_cross_entropy,
    liger_rms_norm,
    liger_rope,
    liger_swiglu,
)

from trainhub.engine.kernels import compute_dtype

IGNORE = -100


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return liger_rms_norm(x, weight, eps, casting_mode="llama", in_place=False)


def rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    qo, ko = liger_rope(q.transpose(1, 2), k.transpose(1, 2), cos, sin)
    return qo.transpose(1, 2), ko.transpose(1, 2)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return liger_swiglu(gate, up)


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, n: torch.Tensor,
                         chunk: int | None = None) -> torch.Tensor:
    """Same contract as cross_entropy.linear_cross_entropy; Liger picks its own chunk (`chunk` is not used)."""
    device = h.device
    dtype = compute_dtype(h)
    with torch.autocast(device.type, enabled=False):
        total = liger_fused_linear_cross_entropy(h.to(dtype), weight.to(dtype), targets, ignore_index=IGNORE,
                                                 reduction="sum", accum_dtype=torch.float32)
    return total.float() / n
