"""The pure-PyTorch references of the kernels: the eager path the model runs with `backend.kernels: none`.

Each function is what engine/models/transformer.py computed before the kernels existed, unchanged, so
kernels off means bit for bit the model it was; tests/kernels/ compare every Triton op against these.
No Triton import here: the eager path works where Triton is not installed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # float32 statistics even for bf16 activations: a bf16 mean of squares over 4096 values loses the
    # low bits of every term. The normalised value is cast back before the weight, as transformers does.
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, T, heads, head_dim] turned by cos/sin [B, T, head_dim] (rotate-half layout, engine/models/rope.py)."""
    cos, sin = cos.unsqueeze(2), sin.unsqueeze(2)
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-second, first), dim=-1) * sin


def rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return rotate(q, cos, sin), rotate(k, cos, sin)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up
