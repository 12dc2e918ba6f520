#!/usr/bin/env python3
"""Host time of one AdamW step over FSDP2's sharded parameters (DTensors) against the same plain tensors, on
CPU with one gloo process (issue 27: FSDP2 in one process runs 8% behind the plain path on an H100, and the
optimizer then steps DTensors). 146 tensors shaped like a 16-layer Llama's (narrow, so the arithmetic is
small and the time is the dispatch); median of --steps after 3 warm-up steps.

    PYTHONPATH=backend python research/bench_fsdp2_optim_host.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.distributed as dist
from torch import nn


def model(width: int = 64) -> nn.Module:
    torch.manual_seed(0)
    layers = nn.ModuleList()
    for _ in range(16):
        block = nn.Module()
        block.q, block.k, block.v, block.o = (nn.Linear(width, width, bias=False) for _ in range(4))
        block.gate, block.up = nn.Linear(width, 4 * width, bias=False), nn.Linear(width, 4 * width, bias=False)
        block.down = nn.Linear(4 * width, width, bias=False)
        block.norm1, block.norm2 = nn.LayerNorm(width, bias=False), nn.LayerNorm(width, bias=False)
        layers.append(block)
    root = nn.Module()
    root.layers, root.embed, root.norm = layers, nn.Embedding(1000, width), nn.LayerNorm(width, bias=False)
    return root


def step_ms(m: nn.Module, fused: bool, steps: int) -> float:
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, fused=fused, foreach=None if fused else True)
    for _ in range(3):
        opt.step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        opt.step()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29541")
    dist.init_process_group("gloo", rank=0, world_size=1)
    from torch.distributed.fsdp import fully_shard

    print("| AdamW | plain ms | FSDP2 (1 process) ms | ratio |\n|---|---:|---:|---:|")
    for fused in (True, False):
        plain = step_ms(model(), fused, args.steps)
        sharded = model()
        for block in sharded.layers:
            fully_shard(block)
        fully_shard(sharded)
        dt = step_ms(sharded, fused, args.steps)
        print(f"| {'fused' if fused else 'foreach'} | {plain:.2f} | {dt:.2f} | {dt / plain:.1f}x |")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
