"""LoRA's linear layer as one autograd Function: y = x W^T + b + s (x A^T) B^T, the low-rank add fused into a GEMM.

peft's lora.Linear computes base(x) + lora_B(lora_A(dropout(x))) * scaling as five kernels forward (three
matmuls, the scale, the add: two passes over the [tokens, out] result besides the matmuls) and, in the
backward, scales d y ([tokens, out]) again and adds the two d x contributions in another pass. Here every
element-wise pass over a [tokens, out] or [tokens, in] tensor is folded into cuBLAS's epilogue:

    forward    xa = x A^T                                [tokens, r], r = rank: tiny
               y  = [x | s xa] [W | B]^T (+ b)           stacked (out >= in): one GEMM, K = in + r deep
          or   y  = x W^T (+ b);  y += s * xa B^T        otherwise: addmm_ with alpha = s, beta = 1
    backward   dxa = s * dy B                            [tokens, r]
               dB  = s * dy^T xa,  dA = dxa^T x          [out, r], [r, in]
               dx  = [dy | dxa] [W ; A]                  stacked (in >= out): one GEMM, K = out + r deep
          or   dx  = dy W;  dx += dxa A                  otherwise: addmm_, the second contribution in the epilogue

The stacked forward trades a copy of x and of W (each cat: [tokens, in + r], [out, in + r]) for the addmm_'s
read and write of y ([tokens, out]) and its thin rank-r GEMM, which cuBLAS runs far below bandwidth: it pays
where out >= in (q/o/gate/up_proj of a Llama; research/bench_roofline.py --frozen times both paths per shape,
the rows "lora forward" and "lora forward, the other path"), not for down_proj, whose x is 4x wider than its
y. The backward's d x is the mirror image: its output is [tokens, in], so stacking pays where in >= out (q/o,
k/v, down_proj).

Saved for backward: x (in the compute dtype, as autocast's matmul would keep it) and xa; W is frozen (no
d W unless it requires grad, as in LoRA on top of a full fine-tune). QLoRA's NF4 weight (models/quant.py) is
dequantized to the compute dtype for the forward's GEMM and again in the backward: the 4-bit tensor is what is
kept (as its plain parts: nf4_meta), never its dense copy, so QLoRA's memory stays QLoRA's. A down_proj fed
by SwiGLU keeps gate and up instead of x and remakes x in the backward (SwigluLoraFunction). This is cuBLAS,
not Triton: a hand-written Triton GEMM does not beat cuBLAS at these shapes, so the win is the passes not made.
Precision: matmuls in the compute dtype (autocast's, else x's) with float32 accumulation; the low-rank
update is added to the base result inside the GEMM in float32 before one rounding (peft rounds the product,
the scaled product and the sum); on the stacked path s xa is rounded to the compute dtype before the GEMM,
exact when s is a power of two (alpha = 2 r, the usual choice, gives s = 2). Gradients are returned in each
parameter's own dtype (float32 masters).
"""

from __future__ import annotations

import torch

from trainhub.engine.kernels import compute_dtype


def quantized(weight: torch.Tensor) -> bool:
    """torchao's NF4Tensor (QLoRA's base weight, models/quant.py). By the class's name: torch.compile answers
    hasattr(weight, "get_original_weight") False for it while tracing (and NF4's .to() then dequantizes, so the
    traced forward looked right while it saved the dense weight), and torchao stays an optional import."""
    return type(weight).__name__ == "NF4Tensor"


def stacked(in_features: int, out_features: int, rank: int) -> bool:
    """Whether the forward adds the low-rank update inside the base GEMM ([x | s xa] [W | B]^T): where the
    output is at least as wide as the input, and K = in + rank keeps 16-byte rows for the tensor cores."""
    return out_features >= in_features and (in_features + rank) % 8 == 0


def dense(weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The weight as a plain tensor of `dtype`; an NF4 tensor dequantized."""
    return (weight.get_original_weight() if quantized(weight) else weight).to(dtype)


NF4_PARTS = ("quantized_data", "scaler_mean", "quantization_factor", "quantized_scalers", "nf4")
"""torchao's NF4Tensor as plain tensors (its __tensor_flatten__ names): what the Function saves of a 4-bit weight."""


@torch.library.custom_op("trainhub::nf4_dense", mutates_args=())
def _nf4_dense(anchor: torch.Tensor, quantized_data: torch.Tensor, scaler_mean: torch.Tensor,
               quantization_factor: torch.Tensor, quantized_scalers: torch.Tensor, nf4: torch.Tensor, shape: list[int],
               block_size: int, n_blocks: int, scaler_block_size: int, original: torch.dtype,
               dtype: torch.dtype) -> torch.Tensor:
    """An NF4 weight, given as its parts, dequantized to `dtype` by torchao; `anchor` is not read (nf4_meta)."""
    from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import NF4Tensor, SubclassTensorArgs

    meta = SubclassTensorArgs(torch.Size(shape), (shape[1], 1), 0, original, quantized_data.device, False)
    weight = NF4Tensor(meta, block_size, n_blocks, scaler_block_size, quantized_scalers, quantization_factor,
                       scaler_mean, quantized_data, nf4)
    return weight.get_original_weight().to(dtype)


@_nf4_dense.register_fake
def _(anchor, quantized_data, scaler_mean, quantization_factor, quantized_scalers, nf4, shape, block_size, n_blocks,
      scaler_block_size, original, dtype):
    return quantized_data.new_empty(shape, dtype=dtype)


def nf4_meta(weight: torch.Tensor) -> tuple:
    """What _nf4_dense needs of an NF4 weight besides its parts.

    Why the backward dequantizes through this op rather than saving the NF4Tensor and calling dense(): under
    torch.compile a saved NF4Tensor reaches the traced backward as the dense weight the forward made, so every
    frozen weight was kept in 16 bits from the forward to the backward (1.9 GB at the 1B shape: QLoRA's peak
    above LoRA's). Saved as plain parts and dequantized by an opaque op that also takes d y (unread: it makes
    the op backward work, which the partitioner could otherwise move into the forward and save again), only
    the 4-bit parts are kept."""
    return list(weight.shape), weight.block_size, weight.n_blocks, weight.scaler_block_size, weight.dtype


def _forward(x2: torch.Tensor, w: torch.Tensor, bias, a_: torch.Tensor, b_: torch.Tensor, scaling: float, dtype):
    """(y, xa) of x2 [tokens, in] in the compute dtype, autocast off: the forward of the table above."""
    xa = x2 @ a_.T
    if stacked(w.shape[1], w.shape[0], a_.shape[0]):
        xs, ws = torch.cat([x2, xa * scaling], 1), torch.cat([w, b_], 1)
        y = torch.addmm(bias.to(dtype), xs, ws.T) if bias is not None else xs @ ws.T
        del xs, ws  # transient: the backward keeps x2 (or what makes it) and xa, as on the other path
    else:
        y = torch.addmm(bias.to(dtype), x2, w.T) if bias is not None else x2 @ w.T
        y.addmm_(xa, b_.T, alpha=scaling)
    return y, xa


def _save(ctx, kept: list, weight: torch.Tensor, w: torch.Tensor, xa, a_, b_, scaling: float, shape, dtypes) -> None:
    """Save `kept` (the input, or what remakes it), xa, A, B and the weight: NF4's 4-bit parts, never w
    (nf4_meta)."""
    nf4 = quantized(weight)
    ctx.save_for_backward(*kept, xa, a_, b_, *([getattr(weight, n) for n in NF4_PARTS] if nf4 else [w]))
    ctx.nf4, ctx.kept, ctx.compute = (nf4_meta(weight) if nf4 else None), len(kept), xa.dtype
    ctx.scaling, ctx.shape, ctx.dtypes = scaling, shape, dtypes


def _saved(ctx, dy2: torch.Tensor) -> tuple:
    """(kept, xa, A, B, W) as _save left them; an NF4 weight dequantized again (to the compute dtype), here in
    the backward, d y its anchor."""
    saved = ctx.saved_tensors
    kept, (xa, a_, b_), w = saved[:ctx.kept], saved[ctx.kept:ctx.kept + 3], saved[ctx.kept + 3:]
    return kept, xa, a_, b_, _nf4_dense(dy2, *w, *ctx.nf4, ctx.compute) if ctx.nf4 else w[0]


def _grads(ctx, dy2, x2, xa, w, a_, b_, needs) -> tuple:
    """(dx [tokens, in] in the compute dtype, dW, dbias, dA, dB) in their parameters' dtypes; None where not
    needed. `x2` may be None when neither dA nor dW is needed."""
    _, w_dtype, bias_dtype, a_dtype, b_dtype = ctx.dtypes
    need_x, need_w, need_bias, need_a, need_b = needs
    s = ctx.scaling
    dxa = (dy2 @ b_).mul_(s)
    dx = dw = dbias = da = db = None
    if need_b:
        db = (dy2.T @ xa).mul_(s).to(b_dtype)
    if need_a:
        da = (dxa.T @ x2).to(a_dtype)
    if need_x:
        if stacked(w.shape[0], w.shape[1], a_.shape[0]):  # d x = [dy | dxa] [W ; A]: K = out + r
            dx = torch.cat([dy2, dxa], 1) @ torch.cat([w, a_], 0)
        else:
            dx = (dy2 @ w).addmm_(dxa, a_)
    if need_w:
        dw = (dy2.T @ x2).to(w_dtype)
    if need_bias:
        dbias = dy2.sum(0).to(bias_dtype)
    return dx, dw, dbias, da, db


def _dtypes(x, weight, bias, a, b) -> tuple:
    return x.dtype, weight.dtype, None if bias is None else bias.dtype, a.dtype, b.dtype


class LoraLinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, a, b, scaling, dtype):
        shape = x.shape
        with torch.autocast(x.device.type, enabled=False):
            x2 = x.reshape(-1, shape[-1]).to(dtype)
            w, a_, b_ = dense(weight, dtype), a.to(dtype), b.to(dtype)
            y, xa = _forward(x2, w, bias, a_, b_, scaling, dtype)
        _save(ctx, [x2], weight, w, xa, a_, b_, scaling, shape, _dtypes(x, weight, bias, a, b))
        return y.view(*shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, dy):
        with torch.autocast(dy.device.type, enabled=False):
            dy2 = dy.reshape(-1, dy.shape[-1]).to(ctx.compute)
            (x2,), xa, a_, b_, w = _saved(ctx, dy2)
            dx, dw, dbias, da, db = _grads(ctx, dy2, x2, xa, w, a_, b_, ctx.needs_input_grad[:5])
            if dx is not None:
                dx = dx.to(ctx.dtypes[0]).view(ctx.shape)
        return dx, dw, dbias, da, db, None, None


class SwigluLoraFunction(torch.autograd.Function):
    """down(silu(gate) * up) for a fused LoRA down projection: the SwiGLU product h, [tokens, intermediate], is
    made in the forward for the GEMM and made again in the backward for d A, instead of being kept from one to
    the other. SwiGLU keeps gate and up for its own backward either way, so h was a third copy: 134 MB a layer at
    4 x 2048 tokens and intermediate 8192 (2.1 GB over a Llama-3.2-1B's 16 layers), for one element-wise pass
    over gate and up in the backward. The SwiGLU passes are kernels/swiglu.py's ops (product_op says why ops);
    swiglu.SwigluLinearFunction is the same for a plain down_proj."""

    @staticmethod
    def forward(ctx, gate, up, weight, bias, a, b, scaling, dtype):
        from trainhub.engine.kernels.swiglu import check, product_op

        check(gate, up)
        shape = gate.shape
        with torch.autocast(gate.device.type, enabled=False):
            g2, u2 = gate.reshape(-1, shape[-1]).contiguous(), up.reshape(-1, shape[-1]).contiguous()
            w, a_, b_ = dense(weight, dtype), a.to(dtype), b.to(dtype)
            y, xa = _forward(product_op(g2, g2, u2).to(dtype), w, bias, a_, b_, scaling, dtype)
        _save(ctx, [g2, u2], weight, w, xa, a_, b_, scaling, shape, _dtypes(gate, weight, bias, a, b))
        return y.view(*shape[:-1], y.shape[-1])

    @staticmethod
    def backward(ctx, dy):
        from trainhub.engine.kernels.swiglu import product_backward_op, product_op

        need_w, need_bias, need_a, need_b = ctx.needs_input_grad[2:6]
        with torch.autocast(dy.device.type, enabled=False):
            dy2 = dy.reshape(-1, dy.shape[-1]).to(ctx.compute)
            (g2, u2), xa, a_, b_, w = _saved(ctx, dy2)
            h = product_op(dy2, g2, u2).to(ctx.compute) if need_a or need_w else None
            dh, dw, dbias, da, db = _grads(ctx, dy2, h, xa, w, a_, b_, (True, need_w, need_bias, need_a, need_b))
            dg, du = product_backward_op(dh.to(g2.dtype), g2, u2)  # which makes d y contiguous
        return dg.view(ctx.shape), du.view(ctx.shape), dw, dbias, da, db, None, None


def lora_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor,
                scaling: float) -> torch.Tensor:
    """x [..., in] @ weight.T [out, in] + bias + scaling * (x @ a.T [r, in]) @ b.T [out, r]."""
    return LoraLinearFunction.apply(x, weight, bias, a, b, float(scaling), compute_dtype(x))


def swiglu_lora_linear(gate: torch.Tensor, up: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                       a: torch.Tensor, b: torch.Tensor, scaling: float) -> torch.Tensor:
    """lora_linear(silu(gate) * up, ...) without keeping the product for the backward (SwigluLoraFunction)."""
    return SwigluLoraFunction.apply(gate, up, weight, bias, a, b, float(scaling), compute_dtype(gate))


def reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor,
              scaling: float) -> torch.Tensor:
    """peft's vanilla LoRA forward (no dropout): base(x) + lora_B(lora_A(x)) * scaling."""
    f = torch.nn.functional
    return f.linear(x, weight, bias) + f.linear(f.linear(x, a), b) * scaling
