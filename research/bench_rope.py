#!/usr/bin/env python3
"""Benchmark: RoPE on q and k forward + backward, eager vs torch.compile vs trainhub's Triton kernel vs Liger.

Shape: the Llama-3.2-1B attention's q [4, 2048, 32, 64] and k [4, 2048, 8, 64], cos/sin [1, 2048, 64]
(--tiny: q [2, 7, 5, 12], k [2, 7, 3, 12]; CPU smoke test under TRITON_INTERPRET=1). Liger turns its
inputs in place (engine/kernels/liger.py): the bench hands it clones so every call sees the same q and k,
and its time includes that copy (about what our kernel spends writing new tensors instead).

    PYTHONPATH=backend python research/bench_rope.py
    TRITON_INTERPRET=1 PYTHONPATH=backend python research/bench_rope.py --tiny --device cpu --impls triton
"""

from __future__ import annotations

import sys

import torch
from kernel_bench import DTYPES, liger_available, parser, run

from trainhub.engine.kernels import reference


def main() -> int:
    args = parser(__doc__).parse_args()
    b, t, hq, hk, d = (2, 7, 5, 3, 12) if args.tiny else (4, 2048, 32, 8, 64)
    dtype, device = DTYPES[args.dtype], args.device

    def make_inputs():
        gen = torch.Generator().manual_seed(0)
        q = torch.randn(b, t, hq, d, generator=gen).to(device, dtype).requires_grad_()
        k = torch.randn(b, t, hk, d, generator=gen).to(device, dtype).requires_grad_()
        angle = torch.arange(t, dtype=torch.float32)[:, None] / (10000 ** (torch.arange(0, d, 2) / d))
        angle = torch.cat((angle, angle), dim=-1)[None]
        return q, k, angle.cos().to(device, dtype), angle.sin().to(device, dtype)

    from trainhub.engine.kernels.rope import rope

    impls = {"eager": reference.rope, "compile": torch.compile(reference.rope), "triton": rope}
    if liger_available():
        from trainhub.engine.kernels import liger

        impls["liger"] = lambda q, k, cos, sin: liger.rope(q.clone(), k.clone(), cos, sin)
    run("rope", impls, make_inputs, args, f"q [{b}, {t}, {hq}, {d}], k [{b}, {t}, {hk}, {d}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
