"""Fused linear + cross-entropy vs eager (the whole logits): loss, d hidden, d head; fp32, bf16, autocast."""

from __future__ import annotations

import pytest
import torch

from tests.kernels.conftest import DEVICE, TOL, rand, twin
from trainhub.engine.loss import IGNORE

GRAD_BF16 = dict(atol=2e-3, rtol=3e-2)
"""bf16 gradients: the kernel's d head sums chunk products in float32 where eager sums in one bf16 matmul, and
the softmax gradient is rounded to bf16 from a float32 value computed in one pass instead of several."""


def op():
    from trainhub.engine.kernels.cross_entropy import linear_cross_entropy

    return linear_cross_entropy


def reference(*args):
    from trainhub.engine.kernels.cross_entropy import reference

    return reference(*args)


def case(n, h, v, dtype, seed=0):
    hidden = rand(n, h, dtype=dtype, seed=seed)
    head = (0.2 * rand(v, h, dtype=torch.float32, seed=seed + 1)).detach().to(dtype).requires_grad_()
    gen = torch.Generator().manual_seed(seed + 2)
    targets = torch.randint(0, v, (n,), generator=gen)
    targets[torch.rand(n, generator=gen) < 0.2] = IGNORE
    return hidden, head, targets.to(DEVICE)


@pytest.mark.parametrize("n,h,v,chunk", [(67, 48, 1000, 16), (33, 40, 5003, None), (5, 16, 97, 2)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_eager(n, h, v, chunk, dtype):
    hidden, head, targets = case(n, h, v, dtype)
    h2, w2 = twin(hidden), twin(head)
    count = torch.tensor(float((targets != IGNORE).sum()), device=DEVICE)
    want = reference(hidden, head, targets, count)
    got = op()(h2, w2, targets, count, chunk=chunk)
    torch.testing.assert_close(got, want, **TOL[torch.float32 if dtype == torch.float32 else torch.bfloat16])
    (2.5 * want).backward()  # a grad_out other than 1 reaches the stored gradients
    (2.5 * got).backward()
    tol = TOL[torch.float32] if dtype == torch.float32 else GRAD_BF16
    assert h2.grad.dtype == hidden.dtype and w2.grad.dtype == head.dtype
    torch.testing.assert_close(h2.grad, hidden.grad, **tol)
    torch.testing.assert_close(w2.grad, head.grad, **tol)


def test_autocast_float32_masters():
    """Autocast bf16 with a float32 head (the training setup): gradients come back float32, close to eager."""
    hidden, head, targets = case(29, 32, 700, torch.float32)
    h2, w2 = twin(hidden), twin(head)
    count = torch.tensor(20.0, device=DEVICE)
    with torch.autocast(DEVICE, dtype=torch.bfloat16):
        want = reference(hidden, head, targets, count)
        got = op()(h2, w2, targets, count, chunk=8)
    torch.testing.assert_close(got, want, **TOL[torch.bfloat16])
    want.backward()
    got.backward()
    assert w2.grad.dtype == torch.float32
    torch.testing.assert_close(h2.grad, hidden.grad, **GRAD_BF16)
    torch.testing.assert_close(w2.grad, head.grad, **GRAD_BF16)


def test_frozen_head_and_no_grad():
    hidden, head, targets = case(19, 24, 300, torch.float32)
    head = head.detach()
    count = torch.tensor(10.0, device=DEVICE)
    with torch.no_grad():
        torch.testing.assert_close(op()(hidden, head, targets, count), reference(hidden, head, targets, count))
    h2 = twin(hidden)
    op()(h2, head, targets, count, chunk=4).backward()
    reference(hidden, head, targets, count).backward()
    torch.testing.assert_close(h2.grad, hidden.grad, **TOL[torch.float32])


def test_all_ignored_rows_give_zero():
    hidden, head, _ = case(9, 16, 50, torch.float32)
    targets = torch.full((9,), IGNORE, device=DEVICE)
    loss = op()(hidden, head, targets, torch.tensor(1.0, device=DEVICE))
    loss.backward()
    assert loss.item() == 0.0 and hidden.grad.abs().max().item() == 0.0 and head.grad.abs().max().item() == 0.0
