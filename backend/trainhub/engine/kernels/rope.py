"""RoPE on q and k in one Triton launch: each program turns every query and key head of one token.

    q', k' = rope(q [B, T, Hq, D], k [B, T, Hk, D], cos, sin [B or 1, T, D])

in the rotate-half layout of engine/models/rope.py: with x = (x1, x2) split at D/2,
x' = (x1 * cos1 - x2 * sin1, x2 * cos2 + x1 * sin2). Eager PyTorch makes about six kernels per
tensor (two multiplies, chunk, negate, cat, add), each a pass over q or k plus the cat's copy;
here one program per token loads the token's cos and sin once, then reads each head of q and k
once and writes it once. The backward is the same kernel turning the other way
(dx1 = dy1 * cos1 + dy2 * sin2, dx2 = dy2 * cos2 - dy1 * sin1) and needs only cos and sin saved.
Float32 inside, rounded once to q's dtype (eager rounds each product and the sum).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _turn(x_ptr, y_ptr, sxb, sxt, sxh, syb, syt, syh, b, t, heads, c1, c2, s1, s2, half,
          HEADS: tl.constexpr, HALF: tl.constexpr, BACKWARD: tl.constexpr):
    h = tl.arange(0, HEADS)[:, None]
    d = tl.arange(0, HALF)[None, :]
    mask = (h < heads) & (d < half)
    src = x_ptr + b * sxb + t * sxt + h * sxh + d
    x1 = tl.load(src, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(src + half, mask=mask, other=0.0).to(tl.float32)
    if BACKWARD:
        y1 = x1 * c1 + x2 * s2
        y2 = x2 * c2 - x1 * s1
    else:
        y1 = x1 * c1 - x2 * s1
        y2 = x2 * c2 + x1 * s2
    dst = y_ptr + b * syb + t * syt + h * syh + d
    tl.store(dst, y1.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(dst + half, y2.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rope(q_ptr, k_ptr, qo_ptr, ko_ptr, cos_ptr, sin_ptr, T, hq, hk, half,
          sqb, sqt, sqh, skb, skt, skh, sob, sot, soh, spb, spt, sph, scb, sct,
          HQ: tl.constexpr, HK: tl.constexpr, HALF: tl.constexpr, BACKWARD: tl.constexpr):
    pid = tl.program_id(0)
    b = (pid // T).to(tl.int64)
    t = (pid % T).to(tl.int64)
    d = tl.arange(0, HALF)[None, :]
    dm = d < half
    cs = cos_ptr + b * scb + t * sct + d
    sn = sin_ptr + b * scb + t * sct + d
    c1 = tl.load(cs, mask=dm, other=0.0).to(tl.float32)
    c2 = tl.load(cs + half, mask=dm, other=0.0).to(tl.float32)
    s1 = tl.load(sn, mask=dm, other=0.0).to(tl.float32)
    s2 = tl.load(sn + half, mask=dm, other=0.0).to(tl.float32)
    _turn(q_ptr, qo_ptr, sqb, sqt, sqh, sob, sot, soh, b, t, hq, c1, c2, s1, s2, half, HQ, HALF, BACKWARD)
    _turn(k_ptr, ko_ptr, skb, skt, skh, spb, spt, sph, b, t, hk, c1, c2, s1, s2, half, HK, HALF, BACKWARD)


def _launch(q, k, cos, sin, backward: bool):
    B, T, hq, D = q.shape
    hk = k.shape[2]
    if D % 2 or k.shape[0] != B or k.shape[1] != T or k.shape[3] != D:
        raise ValueError(f"rope: q {tuple(q.shape)} and k {tuple(k.shape)} must share B, T and an even head_dim")
    if cos.shape[-1] != D or cos.shape[-2] != T or cos.shape[0] not in (1, B) or sin.shape != cos.shape:
        raise ValueError(f"rope: cos/sin {tuple(cos.shape)} do not fit q {tuple(q.shape)}")
    q = q if q.stride(-1) == 1 else q.contiguous()
    k = k if k.stride(-1) == 1 else k.contiguous()
    cos, sin = cos.contiguous(), sin.contiguous()
    qo = torch.empty((B, T, hq, D), device=q.device, dtype=q.dtype)
    ko = torch.empty((B, T, hk, D), device=k.device, dtype=k.dtype)
    cb = 0 if cos.shape[0] == 1 else cos.stride(0)
    _rope[(B * T,)](q, k, qo, ko, cos, sin, T, hq, hk, D // 2,
                    q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
                    qo.stride(0), qo.stride(1), qo.stride(2), ko.stride(0), ko.stride(1), ko.stride(2),
                    cb, cos.stride(1),
                    HQ=triton.next_power_of_2(hq), HK=triton.next_power_of_2(hk),
                    HALF=triton.next_power_of_2(D // 2), BACKWARD=backward)
    return qo, ko


class RopeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, cos, sin):
        ctx.save_for_backward(cos, sin)
        return _launch(q, k, cos, sin, backward=False)

    @staticmethod
    def backward(ctx, dq, dk):
        cos, sin = ctx.saved_tensors
        dq, dk = _launch(dq, dk, cos, sin, backward=True)
        return dq, dk, None, None


def rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q and k [B, T, heads, head_dim] turned by cos/sin [B or 1, T, head_dim] (new tensors, contiguous)."""
    return RopeFunction.apply(q, k, cos, sin)
