#!/usr/bin/env python3
"""Benchmark: silu(gate) * up forward + backward, eager vs torch.compile vs trainhub's Triton kernel vs Liger.

Shape: the Llama-3.2-1B MLP's [4 x 2048 tokens, 8192] (--tiny: [37, 129], CPU smoke test under
TRITON_INTERPRET=1). Peak MB shows the saved-tensor difference (eager keeps silu(gate) too).

--op swiglu_down: the product and the down projection after it (W [2048, 8192], trained), as the MLP runs them
in training: eager, compile, Liger's SwiGLU then F.linear, trainhub's SwiGLU kernel then F.linear (the product
kept for W's gradient), and `triton fused` (kernels/swiglu.py swiglu_linear: the product remade in the backward,
not kept; peak MB lower by one [tokens, 8192] tensor, 128 MiB in bf16).

    PYTHONPATH=backend python research/bench_swiglu.py [--op swiglu_down]
    TRITON_INTERPRET=1 PYTHONPATH=backend python research/bench_swiglu.py --tiny --device cpu --impls triton
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from kernel_bench import DTYPES, liger_available, parser, run

from trainhub.engine.kernels import reference


def main() -> int:
    p = parser(__doc__)
    p.add_argument("--op", choices=("swiglu", "swiglu_down"), default="swiglu")
    args = p.parse_args()
    rows, inter, hidden = (37, 129, 48) if args.tiny else (8192, 8192, 2048)
    dtype, device = DTYPES[args.dtype], args.device
    down = args.op == "swiglu_down"

    def make_inputs():
        gen = torch.Generator().manual_seed(0)
        g = torch.randn(rows, inter, generator=gen).to(device, dtype).requires_grad_()
        u = torch.randn(rows, inter, generator=gen).to(device, dtype).requires_grad_()
        if not down:
            return g, u
        w = (torch.randn(hidden, inter, generator=gen) * inter ** -0.5).to(device, dtype).requires_grad_()
        return g, u, w

    from trainhub.engine.kernels.swiglu import swiglu, swiglu_linear

    ops = {"eager": reference.swiglu, "triton": swiglu}
    if liger_available():
        from trainhub.engine.kernels import liger

        ops["liger"] = liger.swiglu
    if down:
        def then_down(op):
            return lambda g, u, w: F.linear(op(g, u), w)

        impls = {"eager": then_down(reference.swiglu), "compile": torch.compile(then_down(reference.swiglu)),
                 **{name: then_down(op) for name, op in ops.items() if name != "eager"},
                 "triton fused": lambda g, u, w: swiglu_linear(g, u, w, None)}
        run("swiglu_down", impls, make_inputs, args, f"[{rows}, {inter}] -> {hidden}")
        return 0
    impls = {"eager": reference.swiglu, "compile": torch.compile(reference.swiglu),
             **{name: op for name, op in ops.items() if name != "eager"}}
    run("swiglu", impls, make_inputs, args, f"[{rows}, {inter}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
