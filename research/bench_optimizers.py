"""Optimizer step time on the Llama-3.2-1B matrices, for every optimizer trainhub builds, beside torch's fused
AdamW and torch.optim.Muon, with the Newton-Schulz matmul floor measured in the same run (issue 24, part a).

The model is a Llama-3.2-1B by shape (hidden 2048, MLP 8192, 16 layers, 32 heads, 8 KV heads, a tied
128256 x 2048 embedding: 1.24 B parameters), fp32 weights on the GPU with fixed random gradients; each
optimizer is built as a job would build it (trainhub.engine.optim.build_optimizer, the schema's defaults)
and one `optimizer.step()` is timed (median of --steps after --warmup, the device synchronized around each).
SophiaG's Hessian estimate (every 10 steps) and schedule-free's eval swap are not part of a step.

Muon is timed three ways, all over the same 112 hidden matrices: torch.optim.Muon (one matrix at a time),
trainhub's Muon over the matrices alone (muon_matrices: like for like with torch's; the default, its
element-wise passes in Triton kernels on CUDA, one launch per shape; `per-matrix` the same kernels launched once
per matrix (224 launches), `eager` the torch element-wise ops, `compiled` optim.compile;
`ns0` skips the Newton-Schulz matmuls, so it times everything else a step does), and the whole optimizer (muon: AdamW steps the embedding and norms too). The floor is the time of the five bf16
Newton-Schulz iterations' matmuls alone (X X^T, b A + c A A, a X + B X: three batched matmuls per
iteration, per shape), on stacks allocated beforehand; its FLOPs are sum 5 (4 m^2 n + 2 m^3) with m <= n,
45.7 TFLOP for these 112 matrices (~58 ms at the ~790 TFLOP/s of a bf16 matmul on an H200). The issue asks
our Muon over the matrices to take <= 1.15 x the floor.

    python research/bench_optimizers.py            # a CUDA GPU; writes $OUT/bench_optimizers.json if OUT is set
    python research/bench_optimizers.py --tiny     # shapes / 16 and 2 layers, on CPU: checks the script runs

The table is printed last.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

LLAMA_1B = {"vocab": 128256, "hidden": 2048, "mlp": 8192, "layers": 16, "heads": 32, "kv_heads": 8}
TINY = {"vocab": 4096, "hidden": 128, "mlp": 512, "layers": 2, "heads": 2, "kv_heads": 1}  # 1B's shapes / 16


def build_model(shape: dict, device: torch.device) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=shape["vocab"], hidden_size=shape["hidden"], intermediate_size=shape["mlp"],
                         num_hidden_layers=shape["layers"], num_attention_heads=shape["heads"],
                         num_key_value_heads=shape["kv_heads"], tie_word_embeddings=True)
    with torch.device(device):
        model = LlamaForCausalLM(config)
    gen = torch.Generator(device=device).manual_seed(0)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen, device=device) * 1e-3
    return model


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()  # sync


def time_ms(fn, device: torch.device, warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t) * 1e3)
    return times


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(v.numel() * v.element_size() for s in optimizer.state.values() for v in s.values()
               if torch.is_tensor(v))


def matrices(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    from trainhub.engine.optim import split_by_role

    return split_by_role(model)["matrix"].params


def ns_floor(mats: list[torch.Tensor], device: torch.device, warmup: int, steps: int,
             ns_steps: int = 5) -> tuple[list[float], float]:
    """Times of the Newton-Schulz matmuls alone over `mats` (batched by shape, m <= n, bf16), and their FLOPs."""
    shapes: dict[tuple[int, int], int] = {}
    for m in mats:
        a, b = m.shape
        shapes[(min(a, b), max(a, b))] = shapes.get((min(a, b), max(a, b)), 0) + 1
    stacks = [torch.randn(n, a, b, device=device, dtype=torch.bfloat16) * 0.01 for (a, b), n in shapes.items()]
    flops = sum(n * ns_steps * (4 * a * a * b + 2 * a ** 3) for (a, b), n in shapes.items())
    a_, b_, c_ = 3.4445, -4.7750, 2.0315

    def run() -> None:
        for x in stacks:
            for _ in range(ns_steps):
                gram = x @ x.mT
                poly = torch.baddbmm(gram, gram, gram, beta=b_, alpha=c_)
                x = torch.baddbmm(x, poly, x, beta=a_)

    return time_ms(run, device, warmup, steps), flops


def muon_only(model: torch.nn.Module, device: torch.device, **over) -> torch.optim.Optimizer:
    """trainhub's Muon over the hidden matrices alone (like for like with torch.optim.Muon), groups as a job
    builds them with `over` replacing group settings (compile, ns_steps)."""
    from trainhub.engine.optim import build_optimizer
    from trainhub.engine.optim.muon import MuonWithAdamW

    groups = [g for g in build_optimizer(specs()["muon"], model, device).param_groups if g["algo"] == "muon"]
    return MuonWithAdamW([{**g, **over} for g in groups])


def specs() -> dict[str, object]:
    from trainhub.job import OPTIM_TYPES, Job

    # the schema's defaults for each type (the union's member classes, by their `type`)
    union = Job.model_fields["optim"].annotation
    members = {m.model_fields["type"].default: m for m in union.__args__}
    return {t: members[t]() for t in OPTIM_TYPES}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="1B's shapes / 16, 2 layers, on CPU")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--only", default=None, help="comma-separated names to run (default: all)")
    args = parser.parse_args()

    from trainhub.engine.optim import build_optimizer

    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    if device.type == "cpu" and not args.tiny:
        raise SystemExit("no CUDA GPU: run with --tiny to check the script on CPU")
    shape = TINY if args.tiny else LLAMA_1B
    warmup, steps = (1, 2) if args.tiny else (args.warmup, args.steps)
    model = build_model(shape, device)
    mats = matrices(model)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e9:.3f} B params, {len(mats)} hidden matrices, on {device}"
          + (f" ({torch.cuda.get_device_name()})" if device.type == "cuda" else ""), flush=True)

    cases: dict[str, callable] = {
        "torch AdamW fused": lambda: torch.optim.AdamW(model.parameters(), lr=3e-4, fused=device.type == "cuda"),
        "torch.optim.Muon": lambda: torch.optim.Muon(mats, lr=3e-4, adjust_lr_fn="match_rms_adamw"),
        "muon_matrices": lambda: muon_only(model, device),  # the default: fused element-wise kernels on CUDA
        "muon_matrices per-matrix": lambda: muon_only(model, device),  # the kernels launched per matrix (below)
        "muon_matrices eager": lambda: muon_only(model, device, fused=False),
        "muon_matrices compiled": lambda: muon_only(model, device, compile=True),
        "muon_matrices ns0": lambda: muon_only(model, device, ns_steps=0),  # all but the matmuls: the overhead
        "muon_matrices eager ns0": lambda: muon_only(model, device, ns_steps=0, fused=False),
    }
    for name, spec in specs().items():
        cases[name] = lambda spec=spec: build_optimizer(spec, model, device)
    if args.only:
        keep = set(args.only.split(","))
        cases = {k: v for k, v in cases.items() if k in keep}

    results: dict[str, dict] = {}
    floor_ms, floor_flops = ns_floor(mats, device, warmup, steps)
    results["ns_floor"] = {"median_ms": statistics.median(floor_ms), "times_ms": floor_ms,
                           "tflop": floor_flops / 1e12,
                           "tflop_per_s": floor_flops / 1e12 / (statistics.median(floor_ms) / 1e3)}
    print(f"ns_floor: {results['ns_floor']['median_ms']:.2f} ms", flush=True)
    for name, make in cases.items():
        try:
            optimizer = make()
            if device.type == "cuda":
                from trainhub.engine.kernels import muon as muon_kernels

                muon_kernels.ONE_LAUNCH = not name.endswith("per-matrix")
            times = time_ms(optimizer.step, device, warmup, steps)
            results[name] = {"median_ms": statistics.median(times), "times_ms": times,
                             "state_gb": state_bytes(optimizer) / 1e9}
        except Exception as err:  # one optimizer failing (a package missing) leaves the others' numbers
            results[name] = {"error": f"{type(err).__name__}: {err}"}
        print(f"{name}: {results[name].get('median_ms', results[name].get('error'))}", flush=True)
        optimizer = None
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    floor = results["ns_floor"]["median_ms"]
    out = {"device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
           "torch": torch.__version__, "shape": shape, "params": n_params, "matrices": len(mats),
           "warmup": warmup, "steps": steps, "results": results}
    if os.environ.get("OUT"):
        path = Path(os.environ["OUT"]) / ("bench_optimizers_tiny.json" if args.tiny else "bench_optimizers.json")
        path.write_text(json.dumps(out, indent=1))
        print(f"wrote {path}")

    print(f"\n{'optimizer':<22} {'step ms':>9} {'x floor':>8} {'state GB':>9}")
    print(f"{'ns_floor (matmuls)':<22} {floor:>9.2f} {1.0:>8.2f} {'':>9}   "
          f"{results['ns_floor']['tflop']:.3g} TFLOP at {results['ns_floor']['tflop_per_s']:.3g} TFLOP/s")
    for name, r in results.items():
        if name == "ns_floor":
            continue
        if "error" in r:
            print(f"{name:<22} {'failed':>9}   {r['error'][:80]}")
            continue
        print(f"{name:<22} {r['median_ms']:>9.2f} {r['median_ms'] / floor:>8.2f} {r['state_gb']:>9.2f}")


if __name__ == "__main__":
    main()
