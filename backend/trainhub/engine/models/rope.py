"""Rotary position embeddings (RoPE, Su et al. 2021, arXiv:2104.09864), with Llama 3.1's frequency scaling.

The technique. Split each query and key head of width d into d/2 pairs; pair i is a point in a
plane, turned by the angle p * w_i at position p, with w_i = theta^(-2i/d). A dot product of two
turned vectors depends only on the difference of their angles, so attention scores depend on the
relative position q - k, and nothing is learned. Small i turn fast (short wavelengths 2*pi/w_i,
local order), large i slowly (long range).

Layout. transformers' checkpoints pair dimension j with j + d/2 (the "rotate half" layout), not
neighbours 2j, 2j+1 as in the paper; the q/k projection weights were permuted on conversion to
match. We use the same layout so HF weights load unchanged: x' = x * cos + rotate_half(x) * sin
with rotate_half(x1, x2) = (-x2, x1), and cos/sin repeated over both halves.

Llama 3 scaling (rope_type "llama3"): to stretch a model trained at L = original_max_position_embeddings
tokens by `factor`, leave the high frequencies alone (wavelength < L / high_freq_factor: they resolve
local order and never wrapped at L), divide the low ones by `factor` (wavelength > L / low_freq_factor:
they are what an unseen position would push past anything trained), and between the two blend
w/factor and w linearly in s = (L / wavelength - low) / (high - low).

Applying them to q and k is engine/kernels' `rope` op (kernels/reference.py: x * cos + rotate_half(x) * sin;
kernels/rope.py: both in one Triton launch).

Precision: frequencies and angles are float32 whatever the model's dtype (a bf16 angle at position
4000 is off by up to 16 radians); cos and sin are cast to the activation dtype only at the end.
"""

from __future__ import annotations

import math

import torch

from trainhub.engine.models.args import ModelArgs


def rope_frequencies(args: ModelArgs, device: torch.device | str | None = None) -> torch.Tensor:
    """The head_dim / 2 angular frequencies w_i (float32), scaled as args.rope_llama3 says."""
    d = args.head_dim
    freq = 1.0 / (args.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float32, device=device) / d))
    scaling = args.rope_llama3
    if scaling is None:
        return freq
    old = scaling.original_max_position_embeddings
    wavelength = 2 * math.pi / freq
    slow = wavelength > old / scaling.low_freq_factor  # stretched by `factor`
    fast = wavelength < old / scaling.high_freq_factor  # kept
    blend = (old / wavelength - scaling.low_freq_factor) / (scaling.high_freq_factor - scaling.low_freq_factor)
    middle = (1 - blend) * freq / scaling.factor + blend * freq
    return torch.where(slow, freq / scaling.factor, torch.where(fast, freq, middle))


def rope_cos_sin(freq: torch.Tensor, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin [B, T, head_dim] for positions [B, T] (B may be 1, broadcast over the batch).

    Computed once per forward and shared by every layer. Autocast is off so the angles stay float32."""
    with torch.autocast(position_ids.device.type, enabled=False):
        angle = position_ids[..., None].float() * freq.float()
        angle = torch.cat((angle, angle), dim=-1)
        return angle.cos().to(dtype), angle.sin().to(dtype)
