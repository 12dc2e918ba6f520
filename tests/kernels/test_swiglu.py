"""SwiGLU kernel vs silu(gate) * up: forward, d gate and d up, fp32 and bf16, odd shapes."""

from __future__ import annotations

import pytest
import torch

from tests.kernels.conftest import TOL, rand, twin
from trainhub.engine.kernels import reference


def op():
    from trainhub.engine.kernels.swiglu import swiglu

    return swiglu


@pytest.mark.parametrize("shape", [(37, 129), (3, 5, 2051), (1,)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_eager(shape, dtype):
    g, u = rand(*shape, dtype=dtype, scale=4.0), rand(*shape, dtype=dtype, seed=1)
    g2, u2 = twin(g), twin(u)
    want, got = reference.swiglu(g, u), op()(g2, u2)
    assert got.dtype == want.dtype
    torch.testing.assert_close(got, want, **TOL[dtype])
    dy = rand(*shape, dtype=dtype, seed=2).detach()
    want.backward(dy)
    got.backward(dy)
    torch.testing.assert_close(g2.grad, g.grad, **TOL[dtype])
    torch.testing.assert_close(u2.grad, u.grad, **TOL[dtype])


def test_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="swiglu"):
        op()(rand(4, 5, dtype=torch.float32), rand(4, 6, dtype=torch.float32))


@pytest.mark.parametrize("shape,out,bias", [((37, 129), 71, False), ((3, 5, 48), 20, True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_linear_fed_by_swiglu_matches_eager_and_keeps_no_product(shape, out, bias, dtype):
    """down(silu(gate) * up) through SwigluLinearFunction against F.linear of the eager product: the output and
    the gradients of gate, up, W, bias; what it saves for the backward holds gate and up but not the product."""
    from trainhub.engine.kernels.swiglu import swiglu_linear

    g, u = rand(*shape, dtype=dtype, scale=4.0), rand(*shape, dtype=dtype, seed=1)
    w = (0.2 * rand(out, shape[-1], dtype=dtype, seed=3)).detach().requires_grad_()
    b = rand(out, dtype=dtype, seed=4).detach().requires_grad_() if bias else None
    leaves = [t for t in (g, u, w, b) if t is not None]
    twins = [twin(t) for t in leaves]
    want = torch.nn.functional.linear(reference.swiglu(g, u), w, b)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        got = swiglu_linear(*twins[:3], twins[3] if bias else None)
    # bf16: the product agrees with eager's to an ulp here and there (test_matches_eager), and K of them sum into
    # each output: a few ulps of the output's own scale
    scale = 1.0 if dtype == torch.float32 else want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=TOL[dtype]["rtol"], atol=TOL[dtype]["atol"] * scale)
    rows = g.numel() // shape[-1]
    assert len([t for t in saved if tuple(t.shape) == (rows, shape[-1])]) == 2  # gate and up; no product
    dy = rand(*want.shape, dtype=dtype, seed=2).detach()
    want.backward(dy)
    got.backward(dy)
    for t, t2 in zip(leaves, twins, strict=True):  # bf16: sums over rows rounded elsewhere than autograd's
        tol = TOL[dtype] if dtype == torch.float32 else dict(rtol=3e-2, atol=3e-2 * t.grad.abs().max().item())
        torch.testing.assert_close(t2.grad, t.grad, **tol)
