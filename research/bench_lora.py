#!/usr/bin/env python3
"""Benchmark: a LoRA linear layer forward + backward; peft's math in eager, torch.compile, and trainhub's fused
autograd Function (engine/kernels/lora.py: the low-rank add and the second d x term inside cuBLAS's GEMMs).

Shape: Llama-3.2-1B's gate/up projection under LoRA r=16, x [4 x 2048 tokens, 2048] -> 8192, base weight
frozen, x, A and B trained (--tiny: [37, 129] -> 71, r 4). Liger-Kernel has no LoRA op: no liger column.

--shape NAME: another projection of the 1B's (q: 2048 -> 2048, kv: 2048 -> 512, gate: the default, down:
8192 -> 2048), each taking the fused Function's stacked or addmm_ path (kernels/lora.py stacked) as it runs
there. --op swiglu_down: the down projection fed by SwiGLU, [4 x 2048, 8192] gate and up -> 2048: SwiGLU's
kernel then the fused layer (the product kept for d A), against `fused swiglu` (SwigluLoraFunction, the product
remade in the backward; peak MB lower by one [tokens, 8192] tensor).

    PYTHONPATH=backend python research/bench_lora.py [--shape down] [--op swiglu_down]
    PYTHONPATH=backend python research/bench_lora.py --tiny --device cpu --impls fused
"""

from __future__ import annotations

import sys

import torch
from kernel_bench import DTYPES, parser, run

from trainhub.engine.kernels.lora import lora_linear, reference

SHAPES = {"gate": (2048, 8192), "q": (2048, 2048), "kv": (2048, 512), "down": (8192, 2048)}


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--shape", choices=sorted(SHAPES), default="gate")
    p.add_argument("--op", choices=("lora_linear", "swiglu_down"), default="lora_linear")
    args = p.parse_args()
    d_in, d_out = SHAPES["down" if args.op == "swiglu_down" else args.shape]
    rows, d_in, d_out, rank = (37, 129, 71, 4) if args.tiny else (8192, d_in, d_out, args.rank)
    dtype, device = DTYPES[args.dtype], args.device
    if args.op == "swiglu_down":
        return swiglu_down(args, rows, d_in, d_out, rank, dtype, device)

    def make_inputs():
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(rows, d_in, generator=gen).to(device, dtype).requires_grad_()
        w = (0.02 * torch.randn(d_out, d_in, generator=gen)).to(device, dtype)
        a = (0.02 * torch.randn(rank, d_in, generator=gen)).to(device, dtype).requires_grad_()
        b = (0.02 * torch.randn(d_out, rank, generator=gen)).to(device, dtype).requires_grad_()
        return x, w, None, a, b, 2.0

    impls = {"eager": reference, "compile": torch.compile(reference), "fused": lora_linear}
    run("lora_linear", impls, make_inputs, args, f"[{rows}, {d_in}] -> {d_out}, r {rank}")
    return 0


def swiglu_down(args, rows: int, inter: int, d_out: int, rank: int, dtype, device) -> int:
    from trainhub.engine.kernels.lora import swiglu_lora_linear
    from trainhub.engine.kernels.reference import swiglu as eager_swiglu
    from trainhub.engine.kernels.swiglu import swiglu

    def make_inputs():
        gen = torch.Generator().manual_seed(0)
        g, u = (torch.randn(rows, inter, generator=gen).to(device, dtype).requires_grad_() for _ in range(2))
        w = (0.02 * torch.randn(d_out, inter, generator=gen)).to(device, dtype)
        a = (0.02 * torch.randn(rank, inter, generator=gen)).to(device, dtype).requires_grad_()
        b = (0.02 * torch.randn(d_out, rank, generator=gen)).to(device, dtype).requires_grad_()
        return g, u, w, None, a, b, 2.0

    def eager(g, u, *rest):
        return reference(eager_swiglu(g, u), *rest)

    impls = {"eager": eager, "compile": torch.compile(eager),
             "swiglu then fused": lambda g, u, *rest: lora_linear(swiglu(g, u), *rest),
             "fused swiglu": swiglu_lora_linear}
    run("lora_swiglu_down", impls, make_inputs, args, f"[{rows}, {inter}] x2 -> {d_out}, r {rank}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
