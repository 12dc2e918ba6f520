#!/usr/bin/env python3
"""Host time of one AdamW step over FSDP2's sharded parameters (DTensors) against the same plain tensors, on
CPU with one gloo process (issue 27: FSDP2 in one process runs 8% behind the plain path on an H100, and the
optimizer then steps DTensors). 146 tensors shaped like a 16-layer Llama's (narrow, so the arithmetic is
small and the time is the dispatch); median of --steps after 3 warm-up steps. Beside torch's AdamW over the
DTensors: trainhub's ShardLocalAdamW (engine/optim/adamw.py, its kernels over the local shards), and the
gradient clip, torch's clip_grad_norm_ against engine/step.py clip_gradients.

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


def median_ms(fn, steps: int) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def step_ms(m: nn.Module, fused: bool, steps: int, cls=torch.optim.AdamW) -> float:
    for p in m.parameters():
        p.grad = torch.zeros_like(p)
    opt = cls(m.parameters(), lr=1e-3, fused=fused, foreach=None if fused else True)
    return median_ms(opt.step, steps)


def clip_ms(m: nn.Module, clip, steps: int) -> float:
    params = list(m.parameters())
    for p in params:
        p.grad = torch.ones_like(p)
    return median_ms(lambda: clip(params, 1.0), steps)


def sharded_model() -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    m = model()
    for block in m.layers:
        fully_shard(block)
    fully_shard(m)
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29541")
    dist.init_process_group("gloo", rank=0, world_size=1)
    from trainhub.engine.optim.adamw import ShardLocalAdamW
    from trainhub.engine.step import clip_gradients

    print("| host ms | plain tensors | FSDP2 (1 process), torch | FSDP2, trainhub's local step |\n|---|---:|---:|---:|")
    for fused in (True, False):
        plain = step_ms(model(), fused, args.steps)
        dt = step_ms(sharded_model(), fused, args.steps)
        local = step_ms(sharded_model(), fused, args.steps, ShardLocalAdamW)
        print(f"| AdamW {'fused' if fused else 'foreach'} | {plain:.2f} | {dt:.2f} ({dt / plain:.1f}x) | "
              f"{local:.2f} ({local / plain:.1f}x) |")
    plain = clip_ms(model(), torch.nn.utils.clip_grad_norm_, args.steps)
    dt = clip_ms(sharded_model(), torch.nn.utils.clip_grad_norm_, args.steps)
    local = clip_ms(sharded_model(), clip_gradients, args.steps)
    print(f"| gradient clip | {plain:.2f} | {dt:.2f} ({dt / plain:.1f}x) | {local:.2f} ({local / plain:.1f}x) |")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
