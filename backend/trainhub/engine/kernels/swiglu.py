"""SwiGLU's element-wise half in one Triton pass each way: y = silu(gate) * up, silu(g) = g * sigmoid(g).

The MLP is down(silu(gate(x)) * up(x)); the matmuls around it stay cuBLAS's. In training, the down projection
takes gate and up itself where it can (SwigluLinearFunction here for a plain Linear, kernels/lora.py's
SwigluLoraFunction for a LoRA layer): it makes the product for its GEMM and again in its backward, so the
product, which its weight gradient needs, is not kept beside gate and up. Eager PyTorch runs
silu and the multiply as two kernels and keeps three [tokens, intermediate] tensors for the
backward: gate (silu's), silu(gate) and up (the multiply's). Here forward reads gate and up once and
writes y; backward keeps only gate and up, one tensor fewer per layer (at 8192 x 8192 bf16, 134 MB a
layer, 2.1 GB over the 16 layers of a Llama 3.2 1B step), recomputes sigmoid, and writes

    d gate = dy * up * sigmoid(g) * (1 + g * (1 - sigmoid(g)))        d up = dy * silu(g)

in one pass. Numerics: float32 inside; silu(g) rounded to the input dtype before the multiply, as
eager's two kernels round it.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from trainhub.engine.kernels import compute_dtype

BLOCK = 2048


@triton.jit
def _forward(g_ptr, u_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    silu = (g * tl.sigmoid(g)).to(g_ptr.dtype.element_ty).to(tl.float32)
    tl.store(y_ptr + offs, (silu * u).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward(dy_ptr, g_ptr, u_ptr, dg_ptr, du_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(g)
    silu = g * sig
    tl.store(dg_ptr + offs, (dy * u * sig * (1.0 + g * (1.0 - sig))).to(dg_ptr.dtype.element_ty), mask=mask)
    tl.store(du_ptr + offs, (dy * silu.to(g_ptr.dtype.element_ty).to(tl.float32)).to(du_ptr.dtype.element_ty),
             mask=mask)


def product(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up of contiguous tensors, no autograd: the forward pass (also kernels/lora.py's, which
    recomputes it in the backward of the down projection it feeds)."""
    y = torch.empty_like(gate)
    n = gate.numel()
    _forward[(triton.cdiv(n, BLOCK),)](gate, up, y, n, BLOCK=BLOCK)
    return y


def product_backward(dy: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(d gate, d up) from d y and the contiguous inputs, no autograd."""
    dy = dy.contiguous()
    dg, du = torch.empty_like(gate), torch.empty_like(up)
    n = gate.numel()
    _backward[(triton.cdiv(n, BLOCK),)](dy, gate, up, dg, du, n, BLOCK=BLOCK)
    return dg, du


def check(gate: torch.Tensor, up: torch.Tensor) -> None:
    if gate.shape != up.shape or gate.dtype != up.dtype:
        raise ValueError(f"swiglu: gate {tuple(gate.shape)} {gate.dtype} and up {tuple(up.shape)} {up.dtype} "
                         "must match")


class SwiGLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up):
        check(gate, up)
        gate, up = gate.contiguous(), up.contiguous()
        ctx.save_for_backward(gate, up)
        return product(gate, up)

    @staticmethod
    def backward(ctx, dy):
        gate, up = ctx.saved_tensors
        return product_backward(dy, gate, up)


@torch.library.custom_op("trainhub::swiglu_product", mutates_args=())
def product_op(anchor: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """product() as an op of its own. torch.compile then calls the Triton kernel rather than tracing into its
    launch (which Triton's CPU interpreter, the tests', does not survive). `anchor` is not read: a backward that
    remakes the product passes d y, which makes the op backward work, so the compiler cannot hoist it into the
    forward and keep its result, the tensor this is for not keeping (kernels/lora.py nf4_meta: the same trap)."""
    return product(gate, up)


@product_op.register_fake
def _(anchor, gate, up):
    return torch.empty_like(gate)


@torch.library.custom_op("trainhub::swiglu_product_backward", mutates_args=())
def product_backward_op(dy: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """product_backward() as an op of its own (product_op says why)."""
    return product_backward(dy, gate, up)


@product_backward_op.register_fake
def _(dy, gate, up):
    return torch.empty_like(gate), torch.empty_like(up)


class SwigluLinearFunction(torch.autograd.Function):
    """down(silu(gate) * up) for a plain Linear down projection: the product is made for the GEMM and made again
    in the backward for the weight gradient, not kept. Saved: gate and up (SwiGLU's own backward needs them) and
    the weight in the compute dtype (what autocast's matmul keeps too). The gradients are autocast's: the
    weight's and bias's in their own dtype (float32 masters), gate's and up's in theirs."""

    @staticmethod
    def forward(ctx, gate, up, weight, bias, dtype):
        check(gate, up)
        shape = gate.shape
        with torch.autocast(gate.device.type, enabled=False):
            g2, u2 = gate.reshape(-1, shape[-1]).contiguous(), up.reshape(-1, shape[-1]).contiguous()
            w, h = weight.to(dtype), product_op(g2, g2, u2).to(dtype)
            y = torch.addmm(bias.to(dtype), h, w.T) if bias is not None else h @ w.T
        ctx.save_for_backward(g2, u2, w)
        ctx.shape, ctx.dtypes = shape, (weight.dtype, None if bias is None else bias.dtype)
        return y.view(*shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, dy):
        g2, u2, w = ctx.saved_tensors
        need_w, need_bias = ctx.needs_input_grad[2:4]
        with torch.autocast(dy.device.type, enabled=False):
            dy2 = dy.reshape(-1, dy.shape[-1]).to(w.dtype)
            dw = (dy2.T @ product_op(dy2, g2, u2).to(w.dtype)).to(ctx.dtypes[0]) if need_w else None
            dbias = dy2.sum(0).to(ctx.dtypes[1]) if need_bias else None
            dg, du = product_backward_op((dy2 @ w).to(g2.dtype), g2, u2)
        return dg.view(ctx.shape), du.view(ctx.shape), dw, dbias, None


def swiglu_linear(gate: torch.Tensor, up: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear(silu(gate) * up, weight, bias) without keeping the product for the backward."""
    return SwigluLinearFunction.apply(gate, up, weight, bias, compute_dtype(gate))


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up, element-wise, same shape and dtype as its inputs."""
    return SwiGLUFunction.apply(gate, up)
