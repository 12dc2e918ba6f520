"""Fused linear + cross-entropy: the head matmul and the loss chunk by chunk, one Triton pass per chunk.

    loss = linear_cross_entropy(h [N, H], weight [V, H], targets [N], n) = sum_t CE(h_t @ weight.T, target_t) / n

targets are already shifted (engine/loss.py), -100 where nothing is scored; n is a float32 tensor.

Why. engine/loss.py's `chunked` keeps the logits from ever being whole, but spends its time in
element-wise passes over each chunk's float32 logits (cast, amax, subtract, exp, sum, divide, the
one-hot subtraction, the scale, the cast back: ~9 passes over c x V x 4 bytes). At N = 8192,
H = 2048, V = 128,256 in bf16 on an H100 that made it 49 ms against eager's 34 ms, whose three
matmuls (2 x 2NHV FLOPs each, 12.9 TFLOP in all) take ~20 ms of either.

Here, per chunk of c rows:

    logits = h_c @ W.T                  cuBLAS, in the compute dtype (bf16): c x V x 2 bytes, the only [c, V] buffer
    _ce_rows (Triton, a program a row)  pass 1: online max and sum of exp over the row -> lse, loss_t = lse - x[target]
                                        pass 2: writes (softmax - onehot(target)) * scale_t back over the logits, bf16
    dh_c = grad @ W                     cuBLAS, written straight into its rows of dh
    dW  += grad.T @ h_c                 cuBLAS, accumulated in float32 (addmm with out_dtype on CUDA: no [V, H] temporary;
                                        where this torch lacks it, in the compute dtype: accumulator_dtype)

So the logits are read twice and written once in bf16 (6 bytes per element instead of ~70 for
nine float32 read-write passes), and the chunk's memory is its bf16 logits alone (512 MiB by
default: 2,048 rows at V = 128k). As in
engine/loss.py the gradients are made in the forward (the logits serve loss and gradients once:
3 matmuls, not 4), kept until backward, which only scales them by the incoming gradient.
scale_t = 1/n on scored rows and 0 elsewhere; n is read by the kernel from device memory, so nothing syncs.

The weight enters in its own dtype (fp32 masters under autocast) and is cast once inside (the bf16
copy autocast would make as well, freed when the forward ends); dW is returned in the weight's dtype
from the float32 accumulator, so no bf16 round trip of [V, H].

Precision: logits rounded to bf16 by the matmul (as eager's autocast matmul does), softmax and lse
in float32, the gradient rounded to bf16 before the two backward matmuls (as eager autograd does).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from trainhub.engine.kernels import compute_dtype

IGNORE = -100
CHUNK_LOGIT_BYTES = 2**29
"""Default chunk: rows whose logits, in the compute dtype, fit 512 MiB (2,048 rows at V = 128,256 in bf16; the
chunked loss's float32 buffer alone is as large). Fewer, larger chunks matter for d head: each chunk's addmm
reads and writes the whole float32 [V, H] accumulator (2.1 GB at Llama 3's 128k x 2048), ~0.7 ms on an H100,
so 8 chunks of 1,024 rows would spend ~6 ms on it and 4 chunks ~3 ms."""
BLOCK_V = 4096
"""Columns a program reads at a time: 8 KB of bf16, 32 steps over a 128k row."""


@triton.jit
def _ce_rows(logits_ptr, stride, targets_ptr, loss_ptr, n_ptr, V, ignore_index,
             BLOCK: tl.constexpr, GRAD: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    ptr = logits_ptr + row * stride
    target = tl.load(targets_ptr + row).to(tl.int64)
    scored = target != ignore_index
    cols = tl.arange(0, BLOCK)
    # pass 1: running max m and sum s of exp(x - m) over the row (one read)
    m = tl.full([], float("-inf"), tl.float32)
    s = tl.full([], 0.0, tl.float32)
    for start in range(0, V, BLOCK):
        x = tl.load(ptr + start + cols, mask=start + cols < V, other=float("-inf")).to(tl.float32)
        new_m = tl.maximum(m, tl.max(x, axis=0))
        s = s * tl.exp(m - new_m) + tl.sum(tl.exp(x - new_m), axis=0)
        m = new_m
    lse = m + tl.log(s)
    safe = tl.where(scored, target, 0)
    picked = tl.load(ptr + safe).to(tl.float32)
    tl.store(loss_ptr + row, tl.where(scored, lse - picked, 0.0))
    if GRAD:
        # pass 2: d loss / d logits = (softmax - onehot) / n on scored rows, written over the logits
        scale = tl.where(scored, 1.0 / tl.load(n_ptr), 0.0)
        for start in range(0, V, BLOCK):
            idx = start + cols
            inside = idx < V
            x = tl.load(ptr + idx, mask=inside, other=0.0).to(tl.float32)
            g = (tl.exp(x - lse) - tl.where(idx == safe, 1.0, 0.0)) * scale
            tl.store(ptr + idx, g.to(logits_ptr.dtype.element_ty), mask=inside)


_MIXED_ADDMM: dict[int, bool] = {}


def accumulator_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """float32 where cuBLAS can add bf16/fp16 products straight into a float32 dW (torch.addmm with out_dtype;
    which torch versions accept a float32 `self` there varies, so it is tried once per device), else `dtype`:
    then each chunk's product is added in the compute dtype by the same addmm (one rounding per chunk, as
    Liger does), never through a [V, H] temporary and a second pass (~1 ms a chunk at V = 128k on an H100)."""
    if dtype == torch.float32 or device.type != "cuda":
        return torch.float32
    key = device.index if device.index is not None else torch.cuda.current_device()
    if key not in _MIXED_ADDMM:
        acc = torch.zeros(2, 2, device=device, dtype=torch.float32)
        a = torch.ones(2, 2, device=device, dtype=dtype)
        try:
            torch.addmm(acc, a, a, out_dtype=torch.float32, out=acc)
            _MIXED_ADDMM[key] = bool((acc == 2).all())  # sync: once per process and device
        except (RuntimeError, TypeError):
            _MIXED_ADDMM[key] = False
    return torch.float32 if _MIXED_ADDMM[key] else dtype


def accumulate(dw: torch.Tensor, grad_t: torch.Tensor, h: torch.Tensor) -> None:
    """dw += grad_t @ h, with grad_t and h in the compute dtype and dw in accumulator_dtype's."""
    if dw.dtype == grad_t.dtype:
        dw.addmm_(grad_t, h)
    elif dw.is_cuda:
        torch.addmm(dw, grad_t, h, out_dtype=torch.float32, out=dw)
    else:  # CPU (the interpreter tests): no mixed-dtype addmm there, so a temporary
        dw += grad_t @ h


class LinearCrossEntropy(torch.autograd.Function):
    """sum CE(h @ weight.T, targets) / n, gradients made chunk by chunk in the forward (module docstring)."""

    @staticmethod
    def forward(ctx, h, weight, targets, n, dtype, chunk, need_dh, need_dw):
        rows, vocab = h.shape[0], weight.shape[0]
        hd, wd = h.to(dtype).contiguous(), weight.to(dtype)
        total = torch.zeros((), device=h.device, dtype=torch.float32)
        losses = torch.empty(min(chunk, rows), device=h.device, dtype=torch.float32)
        grads = need_dh or need_dw
        dh = torch.empty(hd.shape, device=h.device, dtype=dtype) if need_dh else None
        acc = accumulator_dtype(h.device, dtype)
        dw = torch.zeros(weight.shape, device=h.device, dtype=acc) if need_dw else None
        targets = targets.contiguous()
        block = min(BLOCK_V, triton.next_power_of_2(vocab))
        with torch.autocast(h.device.type, enabled=False):
            for start in range(0, rows, chunk):
                end = min(start + chunk, rows)
                hc = hd[start:end]
                logits = hc @ wd.T
                _ce_rows[(end - start,)](logits, logits.stride(0), targets[start:end], losses, n, vocab, IGNORE,
                                         BLOCK=block, GRAD=grads, num_warps=8 if block >= 2048 else 4)
                total += losses[:end - start].sum()
                if dh is not None:
                    torch.mm(logits, wd, out=dh[start:end])
                if dw is not None:
                    accumulate(dw, logits.T, hc)
                del logits  # before the next chunk allocates its own
        ctx.grads = (dh, dw)
        ctx.dtypes = (h.dtype, weight.dtype)
        return total / n

    @staticmethod
    def backward(ctx, grad_out):
        dh, dw = ctx.grads
        del ctx.grads  # a second backward through the same forward fails instead of reusing scaled grads
        h_dtype, w_dtype = ctx.dtypes
        if dh is not None:
            dh = dh.mul_(grad_out.to(dh.dtype)).to(h_dtype)
        if dw is not None:
            dw = dw.mul_(grad_out.to(dw.dtype)).to(w_dtype)
        return dh, dw, None, None, None, None, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, n: torch.Tensor,
                         chunk: int | None = None) -> torch.Tensor:
    """Summed cross-entropy of h [N, H] @ weight.T [V, H] over shifted targets [N] (-100: not scored), / n.

    Runs in autocast's dtype when autocast is on, else in h's; n is a float32 tensor on h's device."""
    dtype = compute_dtype(h)
    size = torch.finfo(dtype).bits // 8
    chunk = chunk or max(64, CHUNK_LOGIT_BYTES // (size * weight.shape[0]) // 64 * 64)
    grads = torch.is_grad_enabled()
    return LinearCrossEntropy.apply(h, weight, targets, n, dtype, chunk, grads and h.requires_grad,
                                    grads and weight.requires_grad)


def reference(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, n) -> torch.Tensor:
    """Eager PyTorch: the whole [N, V] logits, float32 log-softmax (engine/loss.py's `eager`)."""
    logits = (h @ weight.T).float()
    return torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum") / n
