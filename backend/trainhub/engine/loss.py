"""The loss seam: token cross-entropy from hidden states and the head weight, eager, chunked or a fused kernel.

    loss = cross_entropy(hidden, head_weight, labels, n_items, impl="eager" | "chunked" | "triton" | "liger")

triton: engine/kernels/cross_entropy.py, the chunked idea below with one Triton pass over each chunk's
bf16 logits instead of ~9 float32 element-wise passes (faster than eager, and leaner than chunked);
liger: Liger-Kernel's fused linear cross-entropy (engine/kernels/liger.py), for comparison.

`labels` are as the batch carries them: aligned with input_ids, -100 where nothing is scored.
Position t predicts labels[t + 1] (the labels are shifted left and padded with -100, as transformers
does, so hidden needs no copy). The sum of token losses is divided by `n_items`, the number of
scored targets in the whole optimizer step (an int, or a tensor so nothing syncs), which makes
micro-batch 2 x accumulation 2 equal micro-batch 4 x accumulation 1. Logits are computed in the
matmul's dtype and widened to float32 before the softmax, so `eager` equals transformers'
ForCausalLMLoss with num_items_in_batch.

Why a chunked loss. The logits are the largest tensor of a training step. For N = 8192 tokens
(8 x 1024), hidden H = 2048 and Llama 3's vocabulary V = 128,256, in bf16 on a GPU:

    eager forward   logits bf16 [N, V]        N*V*2 = 2.10 GB
                    .float() copy             N*V*4 = 4.20 GB
                    log_softmax (kept)        N*V*4 = 4.20 GB
    eager backward  d log_softmax, d logits   2 x 4.20 GB, then 2.10 GB in bf16
    -> about 10-13 GB for a loss whose inputs are hidden (34 MB) and the head (525 MB).

The chunked loss (a torch.autograd.Function) takes `chunk` rows at a time: logits of the chunk,
logsumexp, the summed loss, and right away the gradient of the chunk's logits,
softmax - onehot(target), scaled by 1/n_items on scored rows and 0 elsewhere; that gradient is
multiplied into d hidden (rows of the chunk) and d head (accumulated in float32), and the chunk's
logits are dropped. No [N, V] tensor exists in forward or backward. With chunk = 1024:

    per chunk       logits fp32 (softmax and gradient computed in place in them), the bf16
                    matmul output before the cast, the gradient cast to bf16: 1024*V*(4+2) = 0.79 GB;
                    in bf16 the chunk's d head product grad.T @ h is a [V, H] bf16 temporary (0.5 GB)
    kept            d hidden [N, H] (34 MB), d head fp32 [V, H] (1.05 GB; none when the head is frozen),
                    handed to autograd in place in the backward (no second copy)
    measured (CPU, float32, research/results/loss_memory.md): eager 12.61 GB, chunked 1.65 GB

Gradients in the forward, not recomputed in the backward: each chunk's logits are computed once and
serve both the loss and the gradients (3 matmuls of 2*c*H*V FLOPs per chunk; recomputing in the
backward would take 4, a third more head compute: about 7% more step compute for Llama 3.2 1B,
whose head is 21% of its matmul FLOPs). The price is that d head lives from the loss's forward to its backward (1 GB here),
which LoRA (frozen head) never pays. Backward then only scales the stored gradients by the incoming
gradient (1, or the fp16 loss scale). So the chunked loss must be differentiated once per forward,
as a training step does. Under no_grad (evaluation) or with nothing requiring grad it computes no
gradient at all.

Precision: the chunk's matmuls run in the compute dtype (autocast's, else the inputs'), softmax in
float32, the logit gradient cast to the compute dtype before the two backward matmuls, as eager
autograd does. d head sums chunk products in float32 where eager sums in one matmul: bf16 results
differ by rounding (tests: named tolerances), fp32 agree to ~1e-6.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainhub.engine.kernels import compute_dtype

IGNORE = -100
CHUNK_LOGIT_BYTES = 2**29
"""Default chunk: as many rows as keep one chunk's float32 logits within 512 MiB, a multiple of 64 (1,024 at V = 128,256)."""


def shift_labels(labels: torch.Tensor) -> torch.Tensor:
    """The target of each position: labels[t + 1], and -100 at each row's last position."""
    return F.pad(labels[..., 1:], (0, 1), value=IGNORE)


def cross_entropy(hidden: torch.Tensor, head_weight: torch.Tensor, labels: torch.Tensor, n_items, *,
                  impl: str = "eager", chunk: int | None = None) -> torch.Tensor:
    """Summed token cross-entropy of hidden [B, T, H] @ head_weight.T over labels [B, T] (unshifted), / n_items."""
    if impl not in IMPLS:
        raise ValueError(f"unknown cross-entropy implementation {impl!r}; one of {', '.join(IMPLS)}")
    h = hidden.reshape(-1, hidden.shape[-1])
    targets = shift_labels(labels).reshape(-1).to(h.device)
    return IMPLS[impl](h, head_weight, targets, n_items, chunk)


def _eager(h, weight, targets, n_items, _chunk):
    logits = (h @ weight.T).float()
    return F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum") / n_items


def _chunked(h, weight, targets, n_items, chunk):
    device = h.device
    dtype = compute_dtype(h)
    n = torch.as_tensor(n_items, device=device, dtype=torch.float32)
    grads = torch.is_grad_enabled()
    chunk = chunk or max(64, CHUNK_LOGIT_BYTES // (4 * weight.shape[0]) // 64 * 64)
    # The casts are outside the Function, so autograd carries the gradients back to fp32 masters itself.
    return ChunkedCrossEntropy.apply(h.to(dtype), weight.to(dtype), targets, n, chunk,
                                     grads and h.requires_grad, grads and weight.requires_grad)


class ChunkedCrossEntropy(torch.autograd.Function):
    """sum CE(h @ w.T, targets) / n with gradients computed chunk by chunk in the forward (module docstring)."""

    @staticmethod
    def forward(ctx, h, weight, targets, n, chunk, need_dh, need_dw):
        total = torch.zeros((), device=h.device, dtype=torch.float32)
        dh = torch.empty_like(h) if need_dh else None
        dw = torch.zeros(weight.shape, device=h.device, dtype=torch.float32) if need_dw else None
        with torch.autocast(h.device.type, enabled=False):
            for start in range(0, h.shape[0], chunk):
                hc, tc = h[start:start + chunk], targets[start:start + chunk]
                scored = tc != IGNORE
                safe = torch.where(scored, tc, 0)
                logits = (hc @ weight.T).float()
                picked = logits.gather(1, safe[:, None]).squeeze(1)
                # logsumexp by hand, in the logits' own memory (torch.logsumexp would allocate a second
                # [chunk, V] float32 buffer): e = exp(x - max) in place, lse = log(sum e) + max.
                top = logits.amax(dim=-1, keepdim=True)
                e = logits.sub_(top).exp_()
                norm = e.sum(dim=-1, keepdim=True)
                lse = (norm.log() + top).squeeze(1)
                total += torch.where(scored, lse - picked, 0.0).sum()
                if dh is None and dw is None:
                    del logits, e
                    continue
                grad = e.div_(norm)  # softmax, still in the same memory
                grad[torch.arange(len(tc), device=h.device), safe] -= 1.0
                grad = grad.mul_((scored / n)[:, None]).to(h.dtype)
                if dh is not None:
                    dh[start:start + chunk] = grad @ weight
                if dw is not None and dw.dtype == grad.dtype:
                    dw.addmm_(grad.T, hc)  # float32: accumulated in place, no [V, H] temporary
                elif dw is not None:
                    dw += grad.T @ hc  # bf16/fp16 product ([V, H] in that dtype), summed in float32
                # Free this chunk's [chunk, V] buffers now, not when the next chunk's matmul rebinds the
                # names after allocating its own (two chunks alive at once: +0.5 GB measured at V = 128k).
                del logits, e, grad
        # Kept on ctx, not save_for_backward: backward takes them away and scales them in place, so no
        # second [V, H] exists then, and a second backward through this graph fails instead of reusing them.
        ctx.grads = (dh, dw)
        ctx.weight_dtype = weight.dtype
        return total / n

    @staticmethod
    def backward(ctx, grad_out):
        dh, dw = ctx.grads
        del ctx.grads
        if dh is not None:
            dh.mul_(grad_out.to(dh.dtype))
        if dw is not None:
            dw = dw.mul_(grad_out).to(ctx.weight_dtype)
        return dh, dw, None, None, None, None, None


def _triton(h, weight, targets, n_items, chunk):
    from trainhub.engine.kernels.cross_entropy import linear_cross_entropy

    return linear_cross_entropy(h, weight, targets, torch.as_tensor(n_items, device=h.device, dtype=torch.float32),
                                chunk)


def _liger(h, weight, targets, n_items, chunk):
    from trainhub.engine.kernels.liger import linear_cross_entropy

    return linear_cross_entropy(h, weight, targets, torch.as_tensor(n_items, device=h.device, dtype=torch.float32),
                                chunk)


IMPLS = {"eager": _eager, "chunked": _chunked, "triton": _triton, "liger": _liger}
"""Closed; the fused kernels (triton, liger) are imported when first used, so the others need no Triton."""
