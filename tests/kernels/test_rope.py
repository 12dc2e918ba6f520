"""RoPE kernel (q and k in one launch) vs the eager rotate-half: forward and gradients, fp32 and bf16."""

from __future__ import annotations

import pytest
import torch

from tests.kernels.conftest import DEVICE, TOL, rand, twin
from trainhub.engine.kernels import reference


def op():
    from trainhub.engine.kernels.rope import rope

    return rope


def cos_sin(batch, t, d, dtype):
    pos = torch.arange(t, dtype=torch.float32)[None].expand(batch, t) + torch.arange(batch)[:, None] * 3
    freq = 1.0 / (10000 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    angle = pos[..., None] * freq
    angle = torch.cat((angle, angle), dim=-1)
    return angle.cos().to(DEVICE, dtype), angle.sin().to(DEVICE, dtype)


@pytest.mark.parametrize("b,t,hq,hk,d,cos_batch", [(2, 7, 5, 3, 12, 1), (1, 9, 4, 4, 64, 1), (3, 5, 6, 2, 10, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_eager(b, t, hq, hk, d, cos_batch, dtype):
    q, k = rand(b, t, hq, d, dtype=dtype), rand(b, t, hk, d, dtype=dtype, seed=1)
    cos, sin = cos_sin(cos_batch, t, d, dtype)
    q2, k2 = twin(q), twin(k)
    want = reference.rope(q, k, cos, sin)
    got = op()(q2, k2, cos, sin)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, **TOL[dtype])
    dq, dk = rand(b, t, hq, d, dtype=dtype, seed=2).detach(), rand(b, t, hk, d, dtype=dtype, seed=3).detach()
    torch.autograd.backward(want, (dq, dk))
    torch.autograd.backward(got, (dq, dk))
    torch.testing.assert_close(q2.grad, q.grad, **TOL[dtype])
    torch.testing.assert_close(k2.grad, k.grad, **TOL[dtype])


def test_strided_views_as_the_attention_makes_them():
    """q and k as views of one fused projection output (non-contiguous over heads): read through strides."""
    b, t, d = 2, 5, 8
    qkv = rand(b, t, 6 * d, dtype=torch.float32)
    q, k = qkv[..., :4 * d].view(b, t, 4, d), qkv[..., 4 * d:].view(b, t, 2, d)
    cos, sin = cos_sin(1, t, d, torch.float32)
    for g, w in zip(op()(q, k, cos, sin), reference.rope(q, k, cos, sin), strict=True):
        torch.testing.assert_close(g, w, **TOL[torch.float32])


def test_refuses_bad_shapes():
    q, k = rand(1, 4, 2, 8, dtype=torch.float32), rand(1, 4, 2, 6, dtype=torch.float32)
    cos, sin = cos_sin(1, 4, 8, torch.float32)
    with pytest.raises(ValueError, match="rope"):
        op()(q, k, cos, sin)
