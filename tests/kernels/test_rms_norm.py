"""RMSNorm kernel vs the eager reference: forward, d x and d weight, fp32 and bf16, odd shapes."""

from __future__ import annotations

import pytest
import torch

from tests.kernels.conftest import DEVICE, TOL, rand, twin
from trainhub.engine.kernels import reference

SHAPES = [(37, 129), (2, 5, 300), (3, 7, 64)]


def op():
    from trainhub.engine.kernels.rms_norm import rms_norm

    return rms_norm


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype,weight_dtype", [(torch.float32, torch.float32), (torch.bfloat16, torch.bfloat16),
                                                (torch.bfloat16, torch.float32)])
def test_matches_eager(shape, dtype, weight_dtype):
    """bf16 x with a float32 weight is autocast with float32 masters: y is float32 there, as eager gives."""
    x = rand(*shape, dtype=dtype, scale=3.0)
    w = (1 + 0.1 * rand(shape[-1], dtype=torch.float32, seed=1)).detach().to(weight_dtype).requires_grad_()
    x2, w2 = twin(x), twin(w)
    want = reference.rms_norm(x, w, 1e-6)
    got = op()(x2, w2, 1e-6)
    assert got.dtype == want.dtype and got.shape == want.shape
    torch.testing.assert_close(got, want, **TOL[dtype])
    dy = rand(*shape, dtype=want.dtype, seed=2).detach()
    want.backward(dy)
    got.backward(dy)
    torch.testing.assert_close(x2.grad, x.grad, **TOL[dtype])
    # d weight sums over all rows: bf16 rounding of each term accumulates, so compare relative to its size
    tol = TOL[dtype] if dtype == torch.float32 else dict(atol=5e-2 * w.grad.abs().max().item(), rtol=2e-2)
    torch.testing.assert_close(w2.grad, w.grad, **tol)


def test_frozen_weight_and_device():
    x = rand(4, 33, dtype=torch.float32)
    w = torch.ones(33, device=DEVICE)
    y = op()(x, w, 1e-5)
    y.sum().backward()
    assert w.grad is None and x.grad is not None and y.device.type == DEVICE


@pytest.mark.parametrize("shape", [(37, 129), (70, 33)])
def test_backward_programs_loop_over_rows(monkeypatch, shape):
    """With few backward programs each sums several blocks of rows into its d weight partial (the path every
    large input takes on a GPU, where rows outnumber MAX_PROGRAMS x rows per block)."""
    import trainhub.engine.kernels.rms_norm as module

    monkeypatch.setattr(module, "MAX_PROGRAMS", 2)
    x = rand(*shape, dtype=torch.float32, scale=2.0)
    w = (1 + 0.1 * rand(shape[-1], dtype=torch.float32, seed=1)).detach().requires_grad_()
    x2, w2 = twin(x), twin(w)
    dy = rand(*shape, dtype=torch.float32, seed=2).detach()
    reference.rms_norm(x, w, 1e-6).backward(dy)
    module.rms_norm(x2, w2, 1e-6).backward(dy)
    torch.testing.assert_close(x2.grad, x.grad, **TOL[torch.float32])
    torch.testing.assert_close(w2.grad, w.grad, **TOL[torch.float32])
