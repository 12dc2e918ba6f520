#!/usr/bin/env python3
"""Benchmark: a LoRA linear layer forward + backward; peft's math in eager, torch.compile, and trainhub's fused
autograd Function (engine/kernels/lora.py: the low-rank add and the second d x term inside cuBLAS's GEMMs).

Shape: Llama-3.2-1B's gate/up projection under LoRA r=16, x [4 x 2048 tokens, 2048] -> 8192, base weight
frozen, x, A and B trained (--tiny: [37, 129] -> 71, r 4). Liger-Kernel has no LoRA op: no liger column.

    PYTHONPATH=backend python research/bench_lora.py
    PYTHONPATH=backend python research/bench_lora.py --tiny --device cpu --impls fused
"""

from __future__ import annotations

import sys

import torch
from kernel_bench import DTYPES, parser, run

from trainhub.engine.kernels.lora import lora_linear, reference


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--rank", type=int, default=16)
    args = p.parse_args()
    rows, d_in, d_out, rank = (37, 129, 71, 4) if args.tiny else (8192, 2048, 8192, args.rank)
    dtype, device = DTYPES[args.dtype], args.device

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


if __name__ == "__main__":
    sys.exit(main())
