#!/usr/bin/env python3
"""Benchmark: silu(gate) * up forward + backward, eager vs torch.compile vs trainhub's Triton kernel vs Liger.

Shape: the Llama-3.2-1B MLP's [4 x 2048 tokens, 8192] (--tiny: [37, 129], CPU smoke test under
TRITON_INTERPRET=1). Peak MB shows the saved-tensor difference (eager keeps silu(gate) too).

    PYTHONPATH=backend python research/bench_swiglu.py
    TRITON_INTERPRET=1 PYTHONPATH=backend python research/bench_swiglu.py --tiny --device cpu --impls triton
"""

from __future__ import annotations

import sys

import torch
from kernel_bench import DTYPES, liger_available, parser, run

from trainhub.engine.kernels import reference


def main() -> int:
    args = parser(__doc__).parse_args()
    rows, inter = (37, 129) if args.tiny else (8192, 8192)
    dtype, device = DTYPES[args.dtype], args.device

    def make_inputs():
        gen = torch.Generator().manual_seed(0)
        g = torch.randn(rows, inter, generator=gen).to(device, dtype).requires_grad_()
        u = torch.randn(rows, inter, generator=gen).to(device, dtype).requires_grad_()
        return g, u

    from trainhub.engine.kernels.swiglu import swiglu

    impls = {"eager": reference.swiglu, "compile": torch.compile(reference.swiglu), "triton": swiglu}
    if liger_available():
        from trainhub.engine.kernels import liger

        impls["liger"] = liger.swiglu
    run("swiglu", impls, make_inputs, args, f"[{rows}, {inter}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
