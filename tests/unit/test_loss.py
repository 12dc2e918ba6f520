"""engine/loss.py: eager against transformers' ForCausalLMLoss and a hand-computed case; chunked against eager.

Chunked must equal eager in value and in the gradients of hidden and head, with ignored labels, row
counts that no chunk divides, a frozen head, a loss scale, and under bf16 autocast.

Peak memory (research/bench_loss.py, CPU, float32, N = 8192 tokens x H = 2048, V = 128,256; the
peak of live tensor bytes in torch's CPU allocator during forward + backward, read from the
profiler's memory events; inputs not counted, the head's gradient counted): eager 12.61 GB, chunked
1.65 GB (3 x the 4.20 GB of one fp32 [N, V] tensor, vs d head 1.05 + one 1024-row chunk 0.53 + d hidden
0.07). How and why: research/results/loss_memory.md.
"""

from __future__ import annotations

import math

import pytest
import torch

from trainhub.engine.loss import cross_entropy, shift_labels

FP32 = dict(atol=1e-6, rtol=1e-5)
"""fp32: the same sums in another order (chunks) differ by a few ulps of the largest term."""
BF16 = dict(atol=5e-4, rtol=8e-3)
"""bf16 (8 significant bits): the chunked head gradient adds chunk products rounded to bf16 in float32,
where eager rounds one long product once. Measured: loss and d hidden identical, d head one ulp apart
(2.4e-4 on entries up to 0.06); allowed: 2 ulps relative (2 x 2^-8) plus 2 ulps at that scale."""


def tensors(n_rows=3, t=37, h=24, v=1001, dtype=torch.float32, seed=0, ignore=0.3):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n_rows, t, h, generator=gen).to(dtype).requires_grad_()
    weight = (torch.randn(v, h, generator=gen) * 0.5).to(dtype).requires_grad_()
    labels = torch.randint(0, v, (n_rows, t), generator=gen)
    labels[torch.rand(n_rows, t, generator=gen) < ignore] = -100
    return hidden, weight, labels


def loss_and_grads(impl, hidden, weight, labels, n, scale=1.0, **kw):
    hidden.grad = weight.grad = None
    loss = cross_entropy(hidden, weight, labels, n, impl=impl, **kw)
    (loss * scale).backward()
    return loss.detach(), hidden.grad, weight.grad


def test_hand_computed():
    # hidden rows (1,0), (0,1), (1,1); head rows (1,0), (0,1), (0,0): logits (1,0,0), (0,1,0), (1,1,0).
    # labels (-100, 0, 2): position 0 predicts class 0, position 1 class 2, position 2 nothing.
    # loss = [log(e+2) - 1] + [log(e+2) - 0] = 2 log(e+2) - 1, over 2 targets.
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])
    weight = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    labels = torch.tensor([[-100, 0, 2]])
    expected = (2 * math.log(math.e + 2) - 1) / 2
    for impl in ("eager", "chunked"):
        assert cross_entropy(hidden, weight, labels, 2, impl=impl, chunk=2).item() == pytest.approx(expected, abs=1e-6)


def test_shift():
    assert shift_labels(torch.tensor([[5, 6, 7], [-100, 8, 9]])).tolist() == [[6, 7, -100], [8, 9, -100]]


def test_eager_equals_transformers_loss():
    from transformers.loss.loss_utils import ForCausalLMLoss

    hidden, weight, labels = tensors()
    n = torch.tensor(500)  # the step's count, larger than this micro-batch's
    ref = ForCausalLMLoss(hidden @ weight.T, labels, vocab_size=weight.shape[0], num_items_in_batch=n)
    torch.testing.assert_close(cross_entropy(hidden, weight, labels, n), ref, atol=0, rtol=0)


@pytest.mark.parametrize("chunk", [1, 16, 37, 4096])
def test_chunked_equals_eager_fp32(chunk):
    hidden, weight, labels = tensors()
    n = int((shift_labels(labels) != -100).sum())
    eager = loss_and_grads("eager", hidden, weight, labels, n)
    chunked = loss_and_grads("chunked", hidden, weight, labels, torch.tensor(n), chunk=chunk)
    for a, b in zip(eager, chunked, strict=True):
        torch.testing.assert_close(b, a, **FP32)


def test_chunked_equals_eager_bf16():
    hidden, weight, labels = tensors(dtype=torch.bfloat16, seed=1)
    eager = loss_and_grads("eager", hidden, weight, labels, 97)
    chunked = loss_and_grads("chunked", hidden, weight, labels, 97, chunk=16)
    for a, b in zip(eager, chunked, strict=True):
        assert b.dtype == a.dtype
        torch.testing.assert_close(b, a, **BF16)


def test_chunked_under_autocast_keeps_fp32_gradients():
    hidden, weight, labels = tensors(seed=2)
    results = []
    for impl in ("eager", "chunked"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(loss_and_grads(impl, hidden, weight, labels, 80, chunk=20))
    for a, b in zip(*results, strict=True):
        assert b.dtype == torch.float32
        torch.testing.assert_close(b, a, **BF16)


def test_chunked_scales_by_incoming_gradient_and_skips_frozen_head():
    hidden, weight, labels = tensors(seed=3)
    weight.requires_grad_(False)
    eager = loss_and_grads("eager", hidden, weight, labels, 64, scale=1024.0)  # an fp16 loss scale
    chunked = loss_and_grads("chunked", hidden, weight, labels, 64, scale=1024.0, chunk=10)
    assert chunked[2] is None
    torch.testing.assert_close(chunked[0], eager[0], **FP32)
    torch.testing.assert_close(chunked[1], eager[1], atol=1e-3, rtol=1e-5)  # 1024 x the fp32 tolerance


def test_chunked_without_grad_is_the_same_value():
    hidden, weight, labels = tensors(seed=4)
    with torch.no_grad():
        value = cross_entropy(hidden, weight, labels, 70, impl="chunked", chunk=8)
    torch.testing.assert_close(value, cross_entropy(hidden, weight, labels, 70).detach(), **FP32)


def test_unknown_impl_names_the_known_ones():
    hidden, weight, labels = tensors(n_rows=1, t=4)
    with pytest.raises(ValueError, match="eager, chunked"):
        cross_entropy(hidden, weight, labels, 1, impl="fused")
