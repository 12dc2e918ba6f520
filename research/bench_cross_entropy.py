#!/usr/bin/env python3
"""Benchmark: head matmul + cross-entropy forward + backward; eager, torch.compile, engine/loss.py's chunked,
trainhub's fused Triton kernel and Liger-Kernel's fused linear cross-entropy.

Shape: the issue's N = 8192 tokens, H = 2048, V = 128,256 (Llama 3's vocabulary), bf16 hidden and head,
10% of targets ignored (--tiny: 67 x 48 x 1000, a CPU smoke test under TRITON_INTERPRET=1). Baseline on
an H100 before the kernel: chunked 49 ms, eager 34 ms (fwd+bwd). Peak MB is above hidden + head + labels:
eager's includes the [N, V] logits and their float32 copies; the fused ones a chunk of logits and d head.

    PYTHONPATH=backend python research/bench_cross_entropy.py
    PYTHONPATH=backend python research/bench_cross_entropy.py --chunk 2048
    TRITON_INTERPRET=1 PYTHONPATH=backend python research/bench_cross_entropy.py --tiny --device cpu \
        --impls chunked,triton
"""

from __future__ import annotations

import sys

import torch
from kernel_bench import DTYPES, liger_available, parser, run

from trainhub.engine.loss import IGNORE, IMPLS


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--chunk", type=int, default=None, help="rows per chunk (chunked and triton; default: theirs)")
    args = p.parse_args()
    n, h, v = (67, 48, 1000) if args.tiny else (8192, 2048, 128_256)
    dtype, device = DTYPES[args.dtype], args.device

    def make_inputs():
        gen = torch.Generator().manual_seed(0)
        hidden = torch.randn(n, h, generator=gen).to(device, dtype).requires_grad_()
        head = (0.02 * torch.randn(v, h, generator=gen)).to(device, dtype).requires_grad_()
        targets = torch.randint(0, v, (n,), generator=gen)
        targets[torch.rand(n, generator=gen) < 0.1] = IGNORE
        count = torch.tensor(float((targets != IGNORE).sum()), device=device)
        return hidden, head, targets.to(device), count

    def impl(name):
        return lambda hidden, head, targets, count: IMPLS[name](hidden, head, targets, count, args.chunk)

    impls = {"eager": impl("eager"), "compile": torch.compile(impl("eager")), "chunked": impl("chunked"),
             "triton": impl("triton")}
    if liger_available():
        impls["liger"] = impl("liger")
    if args.device == "cuda":
        from trainhub.engine.kernels.cross_entropy import accumulator_dtype

        print(f"triton: d head accumulated in {accumulator_dtype(torch.device('cuda'), dtype)}")
    op = "linear_cross_entropy" + (f" chunk {args.chunk}" if args.chunk else "")
    run(op, impls, make_inputs, args, f"N {n}, H {h}, V {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
