"""Muon's element-wise passes in two Triton kernels, around its Newton-Schulz matmuls (engine/optim/muon.py).

A Muon step over matrices of one shape, eagerly, is memory traffic around the matmuls (bytes per entry,
fp32 weights, gradients and momentum): the momentum lerp (read g and buf, write buf: 12), the Nesterov
look-ahead written into the bf16 stack (read g and buf, write bf16: 10), the Frobenius norm (read 2), the
division by it (4), the decoupled decay (8) and the update (read p and the bf16 update, write p: 10), 46 in
all: ~45 GB over the 0.97 B entries of a Llama-3.2-1B's hidden matrices, ~18 ms of an H100 step whose
matmuls take ~75 ms. Two kernels cut that to 28:

- `momentum_lookahead`: buf <- lerp(buf, g, 1 - mu) and the look-ahead lerp(g, buf, mu) (or buf itself,
  without Nesterov) in one pass, the look-ahead stored straight into its bf16 slot of the stack, and each
  block's sum of the squared bf16 look-ahead written out, so the norm costs no pass of its own (read 8,
  write 6). The partial sums go to one slot per block and are added by torch afterwards, not by atomics, so
  the norm and the step are deterministic.
- `apply_update`: p <- p (1 - lr wd) - lr scale O, decay and update in one pass (read 6, write 4).

The division by the norm stays a torch pass (4). Arithmetic as eager: torch's lerp formula (which end it
starts from depends on the weight), the decayed weight rounded to its dtype before the update is added, the
norm rounded to bf16 as `x.norm()` of a bf16 stack is; only the order of the norm's fp32 sum differs
(tests/kernels/test_muon.py holds the fused step to the eager one). The tensors must be contiguous
(the kernels index flat memory); engine/optim/muon.py steps eagerly otherwise.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

BLOCK = 4096


@triton.jit
def _lerp(start, end, weight):
    """torch.lerp's formula: from the nearer end, so weight 0 and 1 give start and end exactly."""
    return tl.where(weight < 0.5, start + weight * (end - start), end - (end - start) * (1.0 - weight))


@triton.jit
def _bf16(x):
    """float32 -> bf16, rounded to nearest even by hand: a GPU's conversion rounds so, Triton's interpreter (the
    CPU tests) truncates; rounding first makes the conversion exact on both, so the tests hold the kernels to
    eager bit for bit."""
    bits = x.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.to(tl.float32, bitcast=True).to(tl.bfloat16)


@triton.jit
def _store(ptr, x, mask):
    """Store float32 `x` in `ptr`'s dtype (float32 or bf16)."""
    if ptr.dtype.element_ty == tl.bfloat16:
        tl.store(ptr, _bf16(x), mask=mask)
    else:
        tl.store(ptr, x.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def _momentum(g_ptr, buf_ptr, look_ptr, sumsq_ptr, n, mu, NESTEROV: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    buf = tl.load(buf_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    buf = _lerp(buf, g, 1.0 - mu)
    if buf_ptr.dtype.element_ty == tl.bfloat16:  # the look-ahead reads the buffer as stored, from registers
        buf = _bf16(buf).to(tl.float32)
    tl.store(buf_ptr + offs, buf.to(buf_ptr.dtype.element_ty), mask=mask)
    if NESTEROV:
        look = _bf16(_lerp(g, buf, mu))
    else:
        look = _bf16(buf)
    tl.store(look_ptr + offs, look, mask=mask)
    sq = look.to(tl.float32)
    tl.store(sumsq_ptr + pid, tl.sum(sq * sq, axis=0))


@triton.jit
def _apply(p_ptr, o_ptr, n, decay, step, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    p = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    o = tl.load(o_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if p_ptr.dtype.element_ty == tl.bfloat16:  # eager rounds the decayed weight before adding the update
        p = _bf16(p * decay).to(tl.float32)
    else:
        p = p * decay
    _store(p_ptr + offs, p - step * o, mask)


def momentum_lookahead(grads: list[torch.Tensor], bufs: list[torch.Tensor], mu: float,
                       nesterov: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Update the momentum buffers in place; return the bf16 look-aheads stacked [k, m, n] and their Frobenius
    norms [k, 1, 1] in bf16."""
    shape, n = grads[0].shape, grads[0].numel()
    blocks = triton.cdiv(n, BLOCK)
    stack = torch.empty((len(grads), *shape), dtype=torch.bfloat16, device=grads[0].device)
    sumsq = torch.empty((len(grads), blocks), dtype=torch.float32, device=grads[0].device)
    for j, (g, buf) in enumerate(zip(grads, bufs, strict=True)):
        _momentum[(blocks,)](g, buf, stack[j], sumsq[j], n, mu, NESTEROV=nesterov, BLOCK=BLOCK)
    return stack, sumsq.sum(dim=1).sqrt().to(torch.bfloat16).view(-1, 1, 1)


def apply_update(params: list[torch.Tensor], ortho: torch.Tensor, decay: float, step: float) -> None:
    """p <- p * decay - step * ortho[j] for each parameter, in place."""
    n = params[0].numel()
    for j, p in enumerate(params):
        _apply[(triton.cdiv(n, BLOCK),)](p, ortho[j], n, decay, step, BLOCK=BLOCK)
