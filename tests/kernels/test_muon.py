"""Muon's fused element-wise kernels (engine/kernels/muon.py) against the eager per-shape step: momentum
buffers, the bf16 look-ahead's norm and the weights after several steps, with and without Nesterov and decay,
fp32 and bf16 weights, wide, tall and odd shapes (one not a multiple of the kernels' block)."""

from __future__ import annotations

import pytest
import torch

from tests.kernels.conftest import DEVICE
from trainhub.engine.optim.muon import _step_matrices

ULP = dict(atol=1e-6, rtol=2 ** -7)
"""One bf16 ulp, relative (absolute 1e-6 for entries that cancel to ~0)."""


def _run(fused: bool, shape, dtype, nesterov: bool, wd: float, steps: int = 3):
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=gen).to(DEVICE, dtype) for _ in range(3)]
    bufs = [torch.zeros_like(p) for p in params]
    for _ in range(steps):
        grads = [torch.randn(shape, generator=gen).to(DEVICE, dtype) for _ in params]
        _step_matrices(params, grads, bufs, 0.95, nesterov, 0.02, wd, 0.2 * max(shape) ** 0.5, "quintic", 5, 1e-7,
                       fused)
    return params, bufs


@pytest.mark.parametrize("shape", [(64, 96), (96, 64), (67, 131)])  # wide, tall, 8777 entries: 3 blocks, ragged
@pytest.mark.parametrize("nesterov,wd", [(True, 0.1), (False, 0.0)])
def test_fused_step_matches_eager(shape, nesterov, wd, dtype=torch.float32):
    """fp32 weights; bf16 weights below, against hand-computed values."""
    (p_eager, b_eager), (p_fused, b_fused) = (_run(f, shape, dtype, nesterov, wd) for f in (False, True))
    for b, e in zip(b_fused, b_eager, strict=True):
        torch.testing.assert_close(b, e, atol=1e-6, rtol=1e-6)  # the same lerp, element by element
    # Newton-Schulz in bf16 is sensitive: one bf16 ulp of the norm (2**-8) moves its output by ~2% of its norm,
    # one ulp of a single entry by ~0.5-1% (measured on these shapes). The fused norm is summed in another
    # order, so it lands an ulp apart now and then (seen on an H100: 2.4% after three steps), and the rare
    # look-ahead entry rounds the other way. The pieces are held exactly (tests below); the whole step to 5%.
    start, _ = _run(False, shape, dtype, nesterov, wd, steps=0)
    for p, e, s in zip(p_fused, p_eager, start, strict=True):
        assert (p - e).norm() <= 0.05 * (e - s).norm()


def test_update_is_decay_then_step():
    from trainhub.engine.kernels.muon import apply_update

    gen = torch.Generator().manual_seed(4)
    params = [torch.randn(67, 131, generator=gen).to(DEVICE) for _ in range(2)]
    ortho = torch.randn(2, 67, 131, generator=gen).to(DEVICE, torch.bfloat16)
    want = [p * (1 - 0.002) - 0.039 * o.float() for p, o in zip(params, ortho, strict=True)]
    apply_update(params, ortho, 1 - 0.002, 0.039)
    for p, w in zip(params, want, strict=True):
        torch.testing.assert_close(p, w, atol=1e-6, rtol=1e-6)  # fp32: a multiply-add apart at most


def test_bf16_weights_round_once_per_pass():
    """bf16 weights, gradients and buffers: each stored value is the float32 arithmetic rounded to bf16 once,
    within one bf16 ulp (torch's CPU lerp fuses a multiply-add, so a rare entry rounds the other way)
    (torch.lerp's formula for the buffer, the decayed weight rounded before the update is added, as eager's two
    passes do). Against hand-computed values, not the eager step: torch's CPU _foreach_ ops round a Python scalar
    to bf16 first (1 - 0.002 becomes 0.99609375), which the kernels do not."""
    from trainhub.engine.kernels.muon import apply_update, momentum_lookahead

    gen = torch.Generator().manual_seed(5)
    grads = [torch.randn(67, 131, generator=gen).to(DEVICE, torch.bfloat16) for _ in range(2)]
    bufs = [torch.randn(67, 131, generator=gen).to(DEVICE, torch.bfloat16) for _ in range(2)]
    want_bufs = [torch.lerp(b.float(), g.float(), 0.05).bfloat16() for b, g in zip(bufs, grads, strict=True)]
    want = torch.stack([torch.lerp(g.float(), b.float(), 0.95) for g, b in zip(grads, want_bufs, strict=True)])
    stack, _ = momentum_lookahead(grads, bufs, 0.95, True)
    for b, w in zip(bufs, want_bufs, strict=True):
        torch.testing.assert_close(b, w, **ULP)
    # an entry that cancels to ~0 inherits the buffer's ulp (|buf| < 4: 2**-6) when the buffer rounded the other way
    torch.testing.assert_close(stack, want.bfloat16(), atol=2 ** -6, rtol=2 ** -7)
    params = [g.clone() for g in grads]
    apply_update(params, stack, 1 - 0.002, 0.039)
    for p, g, o in zip(params, grads, stack, strict=True):
        want_p = ((g.float() * (1 - 0.002)).bfloat16().float() - 0.039 * o.float()).bfloat16()
        torch.testing.assert_close(p, want_p, **ULP)


def test_norm_is_the_bf16_lookaheads_frobenius_norm():
    from trainhub.engine.kernels.muon import momentum_lookahead

    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(67, 131, generator=gen).to(DEVICE) * s for s in (1.0, 1e-3, 40.0)]
    bufs = [torch.randn(67, 131, generator=gen).to(DEVICE) for _ in grads]
    want_bufs = [torch.lerp(b, g, 0.05) for b, g in zip(bufs, grads, strict=True)]
    want = torch.stack([torch.lerp(g, b, 0.95) for g, b in zip(grads, want_bufs, strict=True)]).bfloat16()
    stack, norm = momentum_lookahead(grads, bufs, 0.95, True)
    torch.testing.assert_close(stack, want, **ULP)  # a GPU's lerp may fuse a multiply-add: an entry an ulp apart
    torch.testing.assert_close(norm, want.norm(dim=(-2, -1), keepdim=True), atol=0, rtol=2 ** -8)


@pytest.mark.parametrize("g_gap, b_gap", [(16, 16), (5, 5), (16, 5)])  # aligned, not, gradients only
def test_one_launch_over_matrices_at_any_addresses(g_gap, b_gap):
    """The matrices are views of flat buffers, in reverse order (negative offsets from the first), a gap of
    entries apart: 16 takes the single-launch plan, 5 the per-matrix one, and gradients aligned beside buffers
    that are not take the per-matrix one for both; every plan gives the eager step's buffers and look-aheads."""
    from trainhub.engine.kernels.muon import _offsets, momentum_lookahead

    gen = torch.Generator().manual_seed(6)
    shape, n, k = (67, 131), 67 * 131, 3

    def views(gap: int) -> list[torch.Tensor]:
        stride = n + gap + (-(n + gap)) % gap if gap == 16 else n + gap
        flat = torch.randn(k * stride, generator=gen).to(DEVICE)
        return [flat[j * stride:j * stride + n].view(shape) for j in reversed(range(k))]

    grads, bufs = views(g_gap), views(b_gap)
    assert len(_offsets(grads)) == (1 if g_gap == 16 else k) and len(_offsets(bufs)) == (1 if b_gap == 16 else k)
    want_bufs = [torch.lerp(b, g, 0.05) for b, g in zip(bufs, grads, strict=True)]
    want = torch.stack([torch.lerp(g, b, 0.95) for g, b in zip(grads, want_bufs, strict=True)]).bfloat16()
    stack, norm = momentum_lookahead(grads, bufs, 0.95, True)
    for b, w in zip(bufs, want_bufs, strict=True):
        torch.testing.assert_close(b, w, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(stack, want, atol=1e-6, rtol=2 ** -7)
    torch.testing.assert_close(norm.view(-1), want.float().norm(dim=(1, 2)).bfloat16(), atol=0, rtol=2 ** -7)
