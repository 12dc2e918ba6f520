"""Per-token log-probabilities of chosen tokens, log_softmax(hidden @ head.T / T)[target], without the
[N, vocab] logits ever existing whole: the RL update's counterpart of engine/loss.py's chunked loss.

    logp = token_logprobs(hidden [N, H], head [V, H], targets [N], temperature)        # [N] float32

Why. The update needs one log-probability per completion token, with gradient. Eager, for a micro-batch
of 16 completions x 256 tokens and Qwen's vocabulary of 151,936, the logits are 4,096 x 151,936: 1.2 GB
in bf16, 2.5 GB as float32, and autograd keeps the float32 copy (and the softmax's) until the backward.

How. The forward walks `chunk` rows at a time: logits of the chunk in float32, their log_softmax, the
picked entry; nothing of the chunk is kept but hidden and head themselves, and each row's log-sum-exp
(N floats, free there: lse = x[t] - log p[t]). Unlike the cross-entropy (whose upstream gradient is one
scalar, so engine/loss.py computes gradients already in the forward), the incoming gradient here is a
vector g [N] (each token's ratio, advantage and clip decide it), so the backward recomputes each chunk's
logits and turns them into the softmax in place, exp(x / T - lse), with no second chunk:
d logits = g * (onehot(target) - softmax) / T, then d hidden = d logits @ head and
d head += d logits.T @ hidden (float32 accumulation). One extra head matmul per chunk in exchange for
memory that does not grow with N x V. d head is summed as the fused cross-entropy sums it
(kernels/cross_entropy.py accumulate): in float32, each chunk's bf16 product added by cuBLAS straight into
it, with no [V, H] temporary.

Precision: matmuls in the compute dtype (autocast's, else the inputs'), softmax in float32, as the
eager path `(hidden @ head.T).float() / T` then log_softmax; fp32 agrees with it to ~1e-6.
"""

from __future__ import annotations

import torch

from trainhub.engine.kernels import compute_dtype
from trainhub.engine.kernels.cross_entropy import accumulate, accumulator_dtype

CHUNK_LOGIT_BYTES = 2**28
"""Rows per chunk: as many as keep one chunk's float32 logits within 256 MiB (441 rows at V = 151,936)."""


def _chunk_rows(vocab: int) -> int:
    return max(1, CHUNK_LOGIT_BYTES // (4 * vocab))


class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, head, targets, temperature, chunk, dtype):
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(out)
        w = head.to(dtype)
        for lo in range(0, hidden.shape[0], chunk):
            logits = (hidden[lo:lo + chunk].to(dtype) @ w.T).float()
            logits.div_(temperature)  # in place: one chunk of float32 logits alive, not two
            picked = targets[lo:lo + chunk, None]
            # log_softmax's one fused pass rather than x[t] - logsumexp(x), whose composite allocates two temporaries
            out[lo:lo + chunk] = logits.log_softmax(-1).gather(-1, picked).squeeze(-1)
            lse[lo:lo + chunk] = logits.gather(-1, picked).squeeze(-1) - out[lo:lo + chunk]  # x[t] - log p[t]
            del logits
        ctx.save_for_backward(hidden, head, targets, lse)
        ctx.temperature, ctx.chunk, ctx.dtype = temperature, chunk, dtype
        return out

    @staticmethod
    def backward(ctx, grad):
        hidden, head, targets, lse = ctx.saved_tensors
        t, chunk, dtype = ctx.temperature, ctx.chunk, ctx.dtype
        w = head.to(dtype)
        d_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        acc = accumulator_dtype(head.device, dtype)
        d_head = torch.zeros(head.shape, dtype=acc, device=head.device) if ctx.needs_input_grad[1] else None
        for lo in range(0, hidden.shape[0], chunk):
            # The backward runs while the forward's activations are all still alive, so its transients add to
            # the step's peak: every element-wise op is in place, one chunk of float32 logits alive at a time
            # (the H100 trace of a GRPO step had the chunk's logits and a softmax copy both alive at the peak)
            h = hidden[lo:lo + chunk].to(dtype)
            d_logits = (h @ w.T).float()
            # softmax in place from the forward's log-sum-exp: exp(x / T - lse), two passes over the one chunk
            d_logits.div_(t).sub_(lse[lo:lo + chunk, None]).exp_()  # d logp / d logits = onehot - softmax, x g / T
            d_logits.neg_().scatter_add_(-1, targets[lo:lo + chunk, None], torch.ones_like(d_logits[:, :1]))
            d_logits = d_logits.mul_(grad[lo:lo + chunk, None] / t).to(dtype)
            if d_hidden is not None:
                d_hidden[lo:lo + chunk] = (d_logits @ w).to(hidden.dtype)
            if d_head is not None:  # into the float32 sum in place on CUDA: no [V, H] temporary
                accumulate(d_head, d_logits.T, h)
            del d_logits
        return d_hidden, None if d_head is None else d_head.to(head.dtype), None, None, None, None


def token_logprobs(hidden: torch.Tensor, head: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
                   chunk: int | None = None) -> torch.Tensor:
    """log_softmax(hidden @ head.T / temperature) at `targets`, per row: [N] float32 (module docstring)."""
    chunk = chunk or _chunk_rows(head.shape[0])
    return _TokenLogprobs.apply(hidden, head, targets, float(temperature), chunk, compute_dtype(hidden))
