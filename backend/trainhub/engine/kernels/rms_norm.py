"""RMSNorm in one Triton pass forward and one backward: y = weight * (x / sqrt(mean(x^2) + eps)).

Eager PyTorch (kernels/reference.py) makes five element-wise kernels forward (cast, square, mean,
rsqrt-multiply, cast back, times weight) and keeps the float32 copy of x for the backward: at
[8192, 2048] bf16 that is 67 MB kept and ~10 reads/writes of the activation. Here a program
normalises whole rows in registers: forward reads x once and writes y once, keeping only
rstd [rows] (float32) beside x; backward reads x, dy once and writes dx, plus one float32 partial
sum of dweight per program (summed by torch: [programs, H], at most 1,024 programs).

Numerics follow the eager module exactly: statistics in float32, the normalised value rounded to
x's dtype before the weight multiplies it, and y in the promoted dtype of weight and x (float32
under autocast with float32 master weights, as eager's mixed-dtype multiply gives). Backward treats
the rounding as identity: dx = rstd * (dn - n * mean(dn * n)), dn = dy * weight, n = x * rstd.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

MAX_PROGRAMS = 1024
"""Backward programs at most, each summing its rows' d weight into one float32 partial row ([1024, H]: 8 MB at
H = 2048): ~8 per SM of an H100, enough to fill it; a constant, so nothing queries the device while compiling."""


@triton.jit
def _forward(x_ptr, w_ptr, y_ptr, rstd_ptr, rows, H, eps, ROWS: tl.constexpr, BLOCK: tl.constexpr):
    r = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    c = tl.arange(0, BLOCK)
    mask = (r[:, None] < rows) & (c[None, :] < H)
    offs = r[:, None].to(tl.int64) * H + c[None, :]
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / H + eps)
    n = (x * rstd[:, None]).to(x_ptr.dtype.element_ty).to(tl.float32)
    w = tl.load(w_ptr + c, mask=c < H, other=0.0).to(tl.float32)
    tl.store(y_ptr + offs, (n * w[None, :]).to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(rstd_ptr + r, rstd, mask=r < rows)


@triton.jit
def _backward(dy_ptr, x_ptr, w_ptr, rstd_ptr, dx_ptr, dw_ptr, rows, H, rows_per_program,
              ROWS: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    c = tl.arange(0, BLOCK)
    w = tl.load(w_ptr + c, mask=c < H, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK], dtype=tl.float32)
    first = pid * rows_per_program
    for start in range(first, first + rows_per_program, ROWS):
        r = start + tl.arange(0, ROWS)
        mask = (r[:, None] < rows) & (r[:, None] < first + rows_per_program) & (c[None, :] < H)
        offs = r[:, None].to(tl.int64) * H + c[None, :]
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + r, mask=r < rows, other=0.0)
        n = x * rstd[:, None]
        dw += tl.sum(dy * n.to(x_ptr.dtype.element_ty).to(tl.float32), axis=0)
        dn = dy * w[None, :]
        dx = rstd[:, None] * (dn - n * (tl.sum(dn * n, axis=1) / H)[:, None])
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
    tl.store(dw_ptr + pid * H + c, dw, mask=c < H)


def _rows_per_block(block: int) -> int:
    """Rows a program holds at once: ~4k elements in registers (one row of 4096, 16 rows of 256)."""
    return max(1, min(16, 4096 // block))


class RMSNormFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps):
        shape, H = x.shape, x.shape[-1]
        x2 = x.reshape(-1, H).contiguous()
        rows = x2.shape[0]
        y = torch.empty(x2.shape, device=x.device, dtype=torch.promote_types(x.dtype, weight.dtype))
        rstd = torch.empty(rows, device=x.device, dtype=torch.float32)
        block = triton.next_power_of_2(H)
        per = _rows_per_block(block)
        _forward[(triton.cdiv(rows, per),)](x2, weight, y, rstd, rows, H, eps, ROWS=per, BLOCK=block,
                                            num_warps=_warps(block * per))
        ctx.save_for_backward(x2, weight, rstd)
        ctx.shape = shape
        return y.view(shape)

    @staticmethod
    def backward(ctx, dy):
        x2, weight, rstd = ctx.saved_tensors
        rows, H = x2.shape
        dy2 = dy.reshape(-1, H).contiguous()
        dx = torch.empty_like(x2)
        block = triton.next_power_of_2(H)
        per = _rows_per_block(block)
        programs = min(triton.cdiv(rows, per), MAX_PROGRAMS)
        rows_per_program = triton.cdiv(triton.cdiv(rows, programs), per) * per
        programs = triton.cdiv(rows, rows_per_program)
        partial = torch.empty(programs, H, device=x2.device, dtype=torch.float32)
        _backward[(programs,)](dy2, x2, weight, rstd, dx, partial, rows, H, rows_per_program, ROWS=per,
                               BLOCK=block, num_warps=_warps(block * per))
        dw = partial.sum(0).to(weight.dtype) if ctx.needs_input_grad[1] else None
        return dx.view(ctx.shape), dw, None


def _warps(elements: int) -> int:
    """4 warps up to 2k elements a program, 8 above (a 4096-wide row in 8 x 32 threads: 16 values each)."""
    return 4 if elements <= 2048 else 8


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """weight * normalise(x) over the last dimension (the module docstring's numerics)."""
    return RMSNormFunction.apply(x, weight, eps)
