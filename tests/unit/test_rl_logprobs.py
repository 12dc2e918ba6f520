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


def _allocations(fn) -> list[int]:
    """Sizes in bytes of the CPU allocations `fn` makes (torch.profiler's memory events)."""
    import json
    import tempfile

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        prof.export_chrome_trace(f.name)
        events = json.loads(open(f.name).read())["traceEvents"]
    return [e["args"]["Bytes"] for e in events if e.get("name") == "[memory]" and e["args"]["Bytes"] > 0]


def test_the_backward_keeps_one_float32_head_gradient_and_one_chunk_of_logits():
    """The backward runs while the whole forward's activations are alive, so its transients add to a step's
    peak: over 4 chunks it allocates the head's float32 gradient once (no [V, H] product per chunk) and per
    chunk one float32 logits, turned into the softmax and the logits' gradient in place (the softmax from the
    forward's log-sum-exp, no second chunk), nothing else of that size."""
    n, vocab, width, chunk = 64, 4096, 32, 16
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(n, width, generator=gen, requires_grad=True)
    head = torch.randn(vocab, width, generator=gen, requires_grad=True)
    out = token_logprobs(hidden, head, torch.randint(0, vocab, (n,), generator=gen), 0.7, chunk=chunk)
    sizes = _allocations(lambda: out.backward(torch.randn(n, generator=gen)))
    head_bytes, chunk_bytes = vocab * width * 4, chunk * vocab * 4
    assert sizes.count(head_bytes) == 1
    assert sizes.count(chunk_bytes) == n // chunk
    assert max(sizes) == head_bytes
