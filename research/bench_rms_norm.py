#!/usr/bin/env python3
"""Benchmark: RMSNorm forward + backward, eager vs torch.compile vs trainhub's Triton kernel vs Liger-Kernel.

Shape: the Llama-3.2-1B step's norm input, [4 x 2048 tokens, 2048] (--tiny: [37, 129], CPU smoke test
under TRITON_INTERPRET=1). --weight float32 is the training setup under autocast (float32 masters: the
residual stream and weight are float32, so eager's output is too).

    PYTHONPATH=backend python research/bench_rms_norm.py                     # CUDA, bf16
    PYTHONPATH=backend python research/bench_rms_norm.py --dtype float32
    TRITON_INTERPRET=1 PYTHONPATH=backend python research/bench_rms_norm.py --tiny --device cpu --impls triton
"""

from __future__ import annotations

import sys

import torch
from kernel_bench import DTYPES, liger_available, parser, run

from trainhub.engine.kernels import reference


def main() -> int:
    args = parser(__doc__).parse_args()
    rows, hidden = (37, 129) if args.tiny else (8192, 2048)
    dtype, device = DTYPES[args.dtype], args.device

    def make_inputs():
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(rows, hidden, generator=gen).to(device, dtype).requires_grad_()
        w = (1 + 0.1 * torch.randn(hidden, generator=gen)).to(device, dtype).requires_grad_()
        return x, w, 1e-5

    from trainhub.engine.kernels.rms_norm import rms_norm

    impls = {"eager": reference.rms_norm, "compile": torch.compile(reference.rms_norm), "triton": rms_norm}
    if liger_available():
        from trainhub.engine.kernels import liger

        impls["liger"] = liger.rms_norm
    run("rms_norm", impls, make_inputs, args, f"[{rows}, {hidden}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
