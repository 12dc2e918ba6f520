"""engine/rl/logprobs.py's chunked per-token log-probabilities against the eager expression, values and
gradients (hidden and head), with a non-uniform upstream gradient, odd chunk sizes and a temperature."""

from __future__ import annotations

import pytest
import torch

from trainhub.engine.rl.logprobs import token_logprobs

FP32 = 1e-5


def eager(hidden, head, targets, temperature):
    logits = (hidden @ head.T).float() / temperature
    return logits.log_softmax(-1).gather(-1, targets[:, None]).squeeze(-1)


@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_values_and_gradients_equal_eager(chunk, temperature):
    gen = torch.Generator().manual_seed(chunk)
    hidden = torch.randn(13, 16, generator=gen, requires_grad=True)
    head = torch.randn(37, 16, generator=gen, requires_grad=True)
    targets = torch.randint(0, 37, (13,), generator=gen)
    upstream = torch.randn(13, generator=gen)
    got = token_logprobs(hidden, head, targets, temperature, chunk=chunk)
    (got * upstream).sum().backward()
    g_hidden, g_head = hidden.grad.clone(), head.grad.clone()
    hidden.grad = head.grad = None
    want = eager(hidden, head, targets, temperature)
    (want * upstream).sum().backward()
    torch.testing.assert_close(got, want, atol=FP32, rtol=0)
    torch.testing.assert_close(g_hidden, hidden.grad, atol=FP32, rtol=1e-5)
    torch.testing.assert_close(g_head, head.grad, atol=FP32, rtol=1e-5)


def test_a_frozen_head_gets_no_gradient():
    hidden = torch.randn(5, 8, requires_grad=True)
    head = torch.randn(11, 8)
    token_logprobs(hidden, head, torch.arange(5), 1.0, chunk=2).sum().backward()
    assert hidden.grad is not None and head.grad is None
