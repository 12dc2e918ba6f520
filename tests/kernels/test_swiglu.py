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
