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

Each kernel runs once per shape over all its matrices (program (i, j): block i of matrix j, found through a
table of offsets from the first matrix), not once per matrix: the 1B's 112 matrices would be 224 launches, and
a k/v matrix's pass (1 M entries, ~5 us of an H100) is shorter than a launch from Python. Measured on an
H100, the whole step is no faster for it (87.5 against 87.6 ms: the Newton-Schulz matmuls queued behind hide
the launches), but the host is freed.

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
def _momentum(g_ptr, g_off, buf_ptr, buf_off, look_ptr, sumsq_ptr, n, blocks, mu, NESTEROV: tl.constexpr,
              BLOCK: tl.constexpr):
    """Program (i, j): block i of matrix j, whose gradient and buffer start g_off[j] and buf_off[j] entries past
    the first matrix's (one launch per shape; the offsets are multiples of 16, so loads stay vectorised)."""
    pid, j = tl.program_id(0), tl.program_id(1)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g_ptr += tl.multiple_of(tl.load(g_off + j), 16)
    buf_ptr += tl.multiple_of(tl.load(buf_off + j), 16)
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
    tl.store(look_ptr + j.to(tl.int64) * n + offs, look, mask=mask)
    sq = look.to(tl.float32)
    tl.store(sumsq_ptr + j * blocks + pid, tl.sum(sq * sq, axis=0))


@triton.jit
def _apply(p_ptr, p_off, o_ptr, n, decay, step, BLOCK: tl.constexpr):
    pid, j = tl.program_id(0), tl.program_id(1)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    p_ptr += tl.multiple_of(tl.load(p_off + j), 16)
    p = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    o = tl.load(o_ptr + j.to(tl.int64) * n + offs, mask=mask, other=0.0).to(tl.float32)
    if p_ptr.dtype.element_ty == tl.bfloat16:  # eager rounds the decayed weight before adding the update
        p = _bf16(p * decay).to(tl.float32)
    else:
        p = p * decay
    _store(p_ptr + offs, p - step * o, mask)


ONE_LAUNCH = True
"""False launches each matrix on its own, as before single launches per shape (research/bench_optimizers.py
times both)."""
_OFFSETS: dict[tuple, torch.Tensor] = {}
"""Offset tables by the tensors' addresses: a model's weights, buffers and (usually) gradients keep theirs from
step to step, so each table is copied to the GPU once."""


def _offsets(ts: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Launch plans for tensors of one shape and dtype: (first tensor, each one's offset from it in entries on
    the device, how many). One plan for all when every offset is a multiple of 16 entries (the caching
    allocator's 512-byte alignment gives that), else one plan per tensor."""
    size = ts[0].element_size()
    addresses = [t.data_ptr() for t in ts]
    if not ONE_LAUNCH or any((a - addresses[0]) % (16 * size) for a in addresses):
        return _per_tensor(ts)
    return [(ts[0], _table(tuple((a - addresses[0]) // size for a in addresses), ts[0].device), len(ts))]


def _per_tensor(ts: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    zero = _table((0,), ts[0].device)
    return [(t, zero, 1) for t in ts]


def _table(offsets: tuple[int, ...], device: torch.device) -> torch.Tensor:
    key = (device, offsets)
    if key not in _OFFSETS:
        if len(_OFFSETS) > 256:  # gradients that move every step (freed and reallocated): start over
            _OFFSETS.clear()
        host = torch.tensor(offsets, dtype=torch.int64)
        _OFFSETS[key] = host.to(device) if device.type == "cpu" else host.pin_memory().to(device, non_blocking=True)
    return _OFFSETS[key]


def momentum_lookahead(grads: list[torch.Tensor], bufs: list[torch.Tensor], mu: float,
                       nesterov: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Update the momentum buffers in place; return the bf16 look-aheads stacked [k, m, n] and their Frobenius
    norms [k, 1, 1] in bf16. One launch for all k matrices when their addresses allow (_offsets)."""
    shape, n = grads[0].shape, grads[0].numel()
    blocks = triton.cdiv(n, BLOCK)
    stack = torch.empty((len(grads), *shape), dtype=torch.bfloat16, device=grads[0].device)
    sumsq = torch.empty((len(grads), blocks), dtype=torch.float32, device=grads[0].device)
    g_plans, b_plans = _offsets(grads), _offsets(bufs)
    if len(g_plans) != len(b_plans):  # one launch needs both gradients and buffers aligned
        g_plans, b_plans = _per_tensor(grads), _per_tensor(bufs)
    start = 0
    for (g, g_off, k), (buf, b_off, _) in zip(g_plans, b_plans, strict=True):
        _momentum[(blocks, k)](g, g_off, buf, b_off, stack[start], sumsq[start], n, blocks, mu, NESTEROV=nesterov,
                               BLOCK=BLOCK)
        start += k
    return stack, sumsq.sum(dim=1).sqrt().to(torch.bfloat16).view(-1, 1, 1)


def apply_update(params: list[torch.Tensor], ortho: torch.Tensor, decay: float, step: float) -> None:
    """p <- p * decay - step * ortho[j] for each parameter, in place (one launch when _offsets allows)."""
    n = params[0].numel()
    blocks, start = triton.cdiv(n, BLOCK), 0
    for p, off, k in _offsets(params):
        _apply[(blocks, k)](p, off, ortho[start], n, decay, step, BLOCK=BLOCK)
        start += k
