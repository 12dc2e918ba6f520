#!/usr/bin/env python3
"""Benchmark: peak memory and time of the eager vs the chunked cross-entropy (trainhub.engine.loss).

One forward + backward of `cross_entropy(hidden [N, H], head [V, H], labels, n)` per implementation,
each in a fresh subprocess (so one's allocations never colour the other's), with 10% of labels
ignored. Reported per implementation:

  peak_gb   the peak of live tensor bytes during forward + backward, above what existed before
            (hidden, head and labels are allocated first and not counted; the gradients are):
            CUDA: torch.cuda.max_memory_allocated(); CPU: torch.profiler's memory events
            (profile_memory=True records every allocation and free of torch's CPU allocator as a
            "[memory]" event of +/- bytes; their running sum in time order, maximum taken)
  rss_gb    CPU only, a cross-check: peak resident set (getrusage ru_maxrss) minus the resident set
            before forward, which also counts allocator slack and pages the OS did not reclaim
  seconds   wall time of forward + backward (CUDA: mean of `repeat` runs after a warm-up, synced)

    PYTHONPATH=backend python research/bench_loss.py                       # CPU, N 8192, H 2048, V 128256
    PYTHONPATH=backend python research/bench_loss.py --device cuda --dtype bfloat16 --out r.json
    PYTHONPATH=backend python research/bench_loss.py --tokens 512 --vocab 32000 --hidden 256   # quick
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def inputs(a, device):
    gen = torch.Generator(device="cpu").manual_seed(0)
    dtype = DTYPES[a.dtype]
    hidden = torch.randn(1, a.tokens, a.hidden, generator=gen).to(device, dtype).requires_grad_()
    head = (torch.randn(a.vocab, a.hidden, generator=gen) * 0.02).to(device, dtype).requires_grad_()
    labels = torch.randint(0, a.vocab, (1, a.tokens), generator=gen)
    labels[torch.rand(1, a.tokens, generator=gen) < 0.1] = -100
    return hidden, head, labels.to(device)


def step(a, impl, hidden, head, labels):
    from trainhub.engine.loss import cross_entropy

    hidden.grad = head.grad = None
    loss = cross_entropy(hidden, head, labels, a.tokens, impl=impl, chunk=a.chunk)
    loss.backward()
    return loss


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB


def current_rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 1e9


def measure_cpu(a, impl) -> dict:
    hidden, head, labels = inputs(a, "cpu")
    before = current_rss_gb()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        t0 = time.perf_counter()
        loss = step(a, impl, hidden, head, labels)
        seconds = time.perf_counter() - t0
    live = peak = 0  # every allocation (+bytes) and free (-bytes) of torch's CPU allocator, in time order
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return {"impl": impl, "loss": loss.item(), "peak_gb": peak / 1e9, "rss_gb": rss_gb() - before,
            "seconds": seconds}


def measure_cuda(a, impl) -> dict:
    hidden, head, labels = inputs(a, "cuda")
    step(a, impl, hidden, head, labels)  # warm-up: kernels, cuBLAS workspaces
    hidden.grad = head.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    loss = step(a, impl, hidden, head, labels)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(a.repeat):
        step(a, impl, hidden, head, labels)
    end.record()
    torch.cuda.synchronize()
    return {"impl": impl, "loss": loss.item(), "peak_gb": peak / 1e9, "seconds": start.elapsed_time(end) / 1e3 / a.repeat}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=8192)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=128256)
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--chunk", type=int, default=None, help="rows per chunk; default: engine/loss.py's")
    p.add_argument("--repeat", type=int, default=5, help="CUDA timing runs")
    p.add_argument("--impls", default="eager,chunked")
    p.add_argument("--one", help=argparse.SUPPRESS)  # the child: measure this implementation, print JSON
    p.add_argument("--out", help="write the results as JSON here")
    a = p.parse_args()
    if a.one:
        print(json.dumps((measure_cuda if a.device == "cuda" else measure_cpu)(a, a.one)))
        return
    rows = []
    for impl in a.impls.split(","):
        child = subprocess.run([sys.executable, *sys.argv, "--one", impl], capture_output=True, text=True, check=True)
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    logits_gb = a.tokens * a.vocab * 4 / 1e9
    print(f"{a.device} {a.dtype}: N={a.tokens} H={a.hidden} V={a.vocab} chunk={a.chunk or 'default'} "
          f"(one fp32 [N, V] tensor: {logits_gb:.2f} GB)")
    print(f"{'impl':8} {'loss':>9} {'peak GB':>8} {'RSS GB':>7} {'seconds':>8}")
    for r in rows:
        rss = f"{r['rss_gb']:7.2f}" if "rss_gb" in r else f"{'-':>7}"
        print(f"{r['impl']:8} {r['loss']:9.5f} {r['peak_gb']:8.2f} {rss} {r['seconds']:8.3f}")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"args": {k: v for k, v in vars(a).items() if k not in ("one", "out")}, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
