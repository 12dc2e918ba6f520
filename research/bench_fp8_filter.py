#!/usr/bin/env python3
"""Microbenchmark: one Linear's forward + backward, bf16 vs each torchao float8 recipe, per (M, K, N), compiled;
the measured shapes where fp8 does not pay become engine/fp8.py's SLOW boxes (the `measured` filter).

What is timed is what a training step does with a Linear in the native engine: float32 master weight, bf16
autocast, x [M, K] bf16 with requires_grad, out = x @ W.T, then the backward with a fixed grad_out (dX and
dW), each variant through torch.compile (the engine refuses fp8 without it). GPU time of `--reps` steps after
`--warmup`, the steps queued behind a spin kernel so that the host's per-call overhead (~1 ms for a compiled
Linear, hidden behind the GPU in a real step) does not count (time_step says how); the median of `--rounds`
rounds. Speedup = bf16 time / fp8 time.

From the grid to the filter: a shape (K, N) "does not pay" when its speedup at the decision M (--decide-m,
default 8192: micro-batch 4 x seq 2048, the 1B benchmark's) is below --min-speedup (default 1.0). Each such
point becomes a box (K, N) -- a Linear is kept in bf16 when K <= k and N <= n for a box -- and a point on
the grid's largest K or N extends its box to infinity on that side. That is conservative: the casts (x, W,
and grad_out in the backward) touch M*K + K*N + M*N elements against the matmuls' M*K*N multiply-adds, a share
~ 1/N + 1/K + 1/M that only falls beyond the grid, so the extension keeps bf16 where fp8 might have paid but
was not measured to. Dominated boxes
are dropped. The script prints the `SLOW = {...}` literal to paste into engine/fp8.py, the table per recipe,
and the decisions for Llama-3.2-1B's and Llama-3-8B's layer shapes.

    PYTHONPATH=backend python research/bench_fp8_filter.py --out fp8_filter.json           # on the GPU
    PYTHONPATH=backend python research/bench_fp8_filter.py --tiny                          # CPU smoke test

The JSON is rewritten after every shape, so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

RECIPES = ("tensorwise", "rowwise", "rowwise_with_gw_hp")
KS = (1024, 2048, 4096, 8192, 14336)
NS = (512, 1024, 2048, 4096, 8192, 14336)
INF = 1 << 62
MODELS = {  # name -> {layer: (K, N)}
    "llama-3.2-1b": {"q_proj/o_proj": (2048, 2048), "k_proj/v_proj": (2048, 512), "gate/up_proj": (2048, 8192),
                     "down_proj": (8192, 2048)},
    "llama-3-8b": {"q_proj/o_proj": (4096, 4096), "k_proj/v_proj": (4096, 1024), "gate/up_proj": (4096, 14336),
                   "down_proj": (14336, 4096)},
}


def make_step(recipe: str | None, k: int, n: int, device, compile_: bool):
    """A function running one forward + backward of a [n, k] Linear (fp8 when `recipe`), and its module."""
    import torch
    from torch import nn

    module = nn.Sequential(nn.Linear(k, n, bias=False, device=device))  # float32 master weight
    if recipe is not None:
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training

        convert_to_float8_training(module, config=Float8LinearConfig.from_recipe_name(recipe))
    forward = torch.compile(module) if compile_ else module

    def step(x, grad):
        module[0].weight.grad = None
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = forward(x)
        out.backward(grad)

    return step


def time_step(step, m: int, k: int, n: int, device, warmup: int, reps: int, rounds: int) -> tuple[float, bool]:
    """Median GPU milliseconds of one step over `rounds` rounds of `reps` steps, and whether every round's
    steps ran back to back on the GPU.

    One compiled Linear's forward + backward costs ~1 ms of host work (guards, AOTAutograd's wrappers,
    autograd), more than the GPU needs for a small shape, so wall time between CUDA events measures the host
    there (the first run of this script: a ~1 ms floor under every shape up to 8192 x 2048 x 2048). In a
    training step the host runs ahead of a busy GPU and that time is hidden, so this times the GPU: each round
    first queues a spin kernel (torch.cuda._sleep) longer than the host needs to launch the round, then the
    start event, the steps and the end event, so the GPU finds the steps queued behind the spin and runs them
    without gaps. If the start event has already run when the host finishes launching, the GPU caught up
    and waited: the round is flagged (the second value False) and the next one spins longer.
    """
    import torch

    x = torch.randn(m, k, device=device, dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn(m, n, device=device, dtype=torch.bfloat16)
    for _ in range(warmup):
        step(x, grad)
    times, ahead = [], True
    if device.type != "cuda":
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(reps):
                step(x, grad)
            times.append((time.perf_counter() - t0) * 1000 / reps)
        return statistics.median(times), ahead
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):  # the host's launch time of one round, with the GPU working alongside
        step(x, grad)
    host_ms = (time.perf_counter() - t0) * 1000
    torch.cuda.synchronize()
    spin_ms = 2 * host_ms + 5
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda._sleep(int(spin_ms * 2.0e6))  # cycles: ~2 GHz, an H100's boost clock at most
        start.record()
        for _ in range(reps):
            step(x, grad)
        end.record()
        if start.query():  # the spin ended before the host had launched the round: gaps possible
            ahead, spin_ms = False, spin_ms * 2
        end.synchronize()
        times.append(start.elapsed_time(end) / reps)
    return statistics.median(times), ahead


def boxes(slow_points: list[tuple[int, int]], ks, ns) -> list[tuple[int, int]]:
    """The non-dominated boxes covering the slow grid points, edges of the grid extended to infinity."""
    grown = {(INF if k == max(ks) else k, INF if n == max(ns) else n) for k, n in slow_points}
    return sorted(b for b in grown if not any(o != b and o[0] >= b[0] and o[1] >= b[1] for o in grown))


def is_slow(bxs, k: int, n: int) -> bool:
    return any(k <= bk and n <= bn for bk, bn in bxs)


def fmt_box(b: tuple[int, int]) -> str:
    return "(" + ", ".join("INF" if v == INF else str(v) for v in b) + ")"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--m", default="8192", help="comma-separated token counts M (rows of x)")
    parser.add_argument("--decide-m", type=int, default=8192, help="the M whose speedups decide the boxes")
    parser.add_argument("--ks", default=",".join(map(str, KS)))
    parser.add_argument("--ns", default=",".join(map(str, NS)))
    parser.add_argument("--min-speedup", type=float, default=1.0, help="fp8 must be at least this much faster")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="write the measurements as JSON here (after every shape)")
    parser.add_argument("--budget-s", type=float, default=480, help="start no new shape after this many seconds "
                        "(the decision M is measured first); the tables then show what was measured")
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: small shapes, eager, one rep")
    args = parser.parse_args()

    import torch
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = 1024  # one compiled graph per shape and variant
    cuda = torch.cuda.is_available() and not args.tiny
    device = torch.device("cuda" if cuda else "cpu")
    recipes = [r for r in args.recipes.split(",") if r]
    unknown = set(recipes) - set(RECIPES)
    if unknown:
        parser.error(f"unknown recipes {sorted(unknown)}; one of {', '.join(RECIPES)}")
    ms = [int(v) for v in args.m.split(",")]
    ks, ns = [int(v) for v in args.ks.split(",")], [int(v) for v in args.ns.split(",")]
    if args.tiny:
        ms, ks, ns, args.decide_m = [32], [64, 128], [32, 64], 32
        args.warmup, args.reps, args.rounds = 1, 1, 1
    if args.decide_m not in ms:
        parser.error(f"--decide-m {args.decide_m} is not among --m {ms}")
    name = torch.cuda.get_device_name() if cuda else "cpu"
    result = {"device": name, "torch": torch.__version__, "compiled": cuda, "ms": ms, "ks": ks, "ns": ns,
              "decide_m": args.decide_m, "min_speedup": args.min_speedup, "times_ms": {}}
    try:
        import torchao

        result["torchao"] = torchao.__version__
    except ImportError:
        parser.error("torchao is not installed (pip install 'trainhub[fp8]')")

    t_start = time.time()
    grid = [(m, k, n) for m in sorted(ms, key=lambda v: v != args.decide_m) for k in ks for n in ns]
    for m, k, n in grid:
        if time.time() - t_start > args.budget_s:
            result["stopped_early"] = f"budget of {args.budget_s:.0f} s spent before M={m} K={k} N={n}"
            print(result["stopped_early"], flush=True)
            break
        key = f"{m}x{k}x{n}"
        row = {}
        for variant in ["bf16", *recipes]:
            step = make_step(None if variant == "bf16" else variant, k, n, device, compile_=cuda)
            row[variant], ahead = time_step(step, m, k, n, device, args.warmup, args.reps, args.rounds)
            if not ahead:
                result.setdefault("host_caught_up", []).append(f"{key} {variant}")
        result["times_ms"][key] = row
        print(f"M={m} K={k} N={n}: " + "  ".join(f"{v} {t:.3f} ms" for v, t in row.items()), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=1))

    print(f"\n{name}, torch {torch.__version__}, torchao {result['torchao']}, speedup = bf16 time / fp8 time "
          f"at M={args.decide_m} (rows K, columns N)")
    slow_boxes = {}
    for recipe in recipes:
        print(f"\n{recipe}\n| K \\ N | " + " | ".join(map(str, ns)) + " |\n|---|" + "---:|" * len(ns))
        slow_points = []
        for k in ks:
            cells = []
            for n in ns:
                t = result["times_ms"].get(f"{args.decide_m}x{k}x{n}")
                if t is None:
                    cells.append("n/a")
                    continue
                speedup = t["bf16"] / t[recipe]
                cells.append(f"{speedup:.2f}")
                if speedup < args.min_speedup:
                    slow_points.append((k, n))
            print(f"| {k} | " + " | ".join(cells) + " |")
        slow_boxes[recipe] = boxes(slow_points, ks, ns)
    complete = all(f"{args.decide_m}x{k}x{n}" in result["times_ms"] for k in ks for n in ns)
    if not complete:
        print(f"\nthe grid at M={args.decide_m} is incomplete: no SLOW boxes from it (rerun with fewer --recipes, "
              f"--ks/--ns or a larger --budget-s)")
        return 0
    result["slow_boxes"] = {r: [[b[0], b[1]] for b in bx] for r, bx in slow_boxes.items()}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))

    print("\nSLOW for engine/fp8.py (a Linear stays bf16 when K <= k and N <= n for one box):\nSLOW = {")
    for recipe, bx in slow_boxes.items():
        print(f'    "{recipe}": ({", ".join(fmt_box(b) for b in bx)}{"," if len(bx) == 1 else ""}),')
    print("}")
    print("\nper layer, measured boxes (and today's SLOW in engine/fp8.py):")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "backend"))
    from trainhub.engine.fp8 import slow as current_slow

    for model, layers in MODELS.items():
        for layer, (k, n) in layers.items():
            cells = [f"{r}: {'bf16' if is_slow(slow_boxes[r], k, n) else 'fp8'} "
                     f"(now {'bf16' if current_slow(r, k, n) else 'fp8'})" for r in recipes]
            print(f"  {model} {layer} K={k} N={n}: " + ", ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
