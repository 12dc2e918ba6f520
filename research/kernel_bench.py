"""Shared harness of research/bench_<op>.py: one op, several implementations, forward + backward timed.

Each implementation is a function of fresh input tensors returning the op's output (a tensor or a tuple).
Per implementation, after `warmup` untimed calls:

  fwd ms       median over `repeat` calls of the forward alone (CUDA events; CPU: wall clock)
  fwd+bwd ms   median of forward then backward with a fixed upstream gradient
  peak MB      CUDA: max_memory_allocated during one forward + backward, above what the inputs already held
  max |diff|   largest difference of output and input gradients against the first implementation (eager):
               a benchmark of a wrong kernel says so

    impls = {"eager": ref, "compile": torch.compile(ref), "triton": ours, "liger": liger_op}
    run("rms_norm", impls, make_inputs, args)      # prints the table last; --out writes JSON
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="bfloat16", choices=DTYPES)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--tiny", action="store_true", help="small shapes: a CPU smoke test (TRITON_INTERPRET=1)")
    p.add_argument("--impls", default=None, help="comma-separated subset of the implementations")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    return p


def liger_available() -> bool:
    try:
        import liger_kernel  # noqa: F401
    except ImportError:
        return False
    return True


def _outputs(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, tuple | list) else [out]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_ms(fn: Callable[[], None], device: torch.device, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def measure(impl: Callable, make_inputs: Callable[[], tuple], device: torch.device, args) -> dict:
    inputs = make_inputs()
    leaves = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    outs = _outputs(impl(*inputs))
    gen = torch.Generator().manual_seed(1)  # the same upstream gradient for every implementation
    grads = [torch.randn(o.shape, generator=gen).to(o.device, o.dtype) if o.dim() else torch.ones_like(o)
             for o in outs]

    def forward():  # with autograd recording, as in training (what is saved for backward is made here)
        impl(*inputs)

    def both():
        for t in leaves:
            t.grad = None
        torch.autograd.backward(_outputs(impl(*inputs)), grads)

    for _ in range(args.warmup):
        both()
    _sync(device)
    fwd = _median_ms(forward, device, args.repeat)
    fwd_bwd = _median_ms(both, device, args.repeat)
    peak = None
    if device.type == "cuda":
        for t in leaves:
            t.grad = None
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        both()
        torch.cuda.synchronize()
        peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    both()
    values = [o.detach().float() for o in _outputs(impl(*inputs))] + [t.grad.float() for t in leaves]
    return {"fwd_ms": fwd, "fwd_bwd_ms": fwd_bwd, "peak_mb": peak, "values": values}


def run(op: str, impls: dict[str, Callable], make_inputs: Callable[[], tuple], args, shape: str) -> dict:
    """Measure each implementation (eager first: the others are compared with it), print the table last."""
    device = torch.device(args.device)
    if args.impls:
        keep = args.impls.split(",")
        impls = {k: v for k, v in impls.items() if k in keep or k == "eager"}
    results, ref = {}, None
    for name, impl in impls.items():
        try:
            r = measure(impl, make_inputs, device, args)
        except Exception as e:  # one failing implementation (say Liger on this torch) must not hide the others
            results[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            print(f"{op} {name}: {results[name]['error']}", flush=True)
            continue
        values = r.pop("values")
        if ref is None:
            ref = values
        r["max_diff"] = max((v - w).abs().max().item() for v, w in zip(values, ref, strict=True))
        results[name] = r
        print(f"{op} {name}: {json.dumps(r)}", flush=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    report = {"op": op, "shape": shape, "dtype": args.dtype, "device": name, "torch": torch.__version__,
              "results": results}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    print(f"\n{op}: {shape}, {args.dtype}, {name}, median of {args.repeat}\n")
    print("| impl | fwd ms | fwd+bwd ms | vs eager | peak MB | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|")
    base = results.get("eager", {}).get("fwd_bwd_ms")
    for impl, r in results.items():
        if "error" in r:
            print(f"| {impl} | error | | | | {r['error'][:60]} |")
            continue
        speed = f"{base / r['fwd_bwd_ms']:.2f}x" if base else ""
        peak = f"{r['peak_mb']:,.0f}" if r["peak_mb"] is not None else "n/a"
        print(f"| {impl} | {r['fwd_ms']:.3f} | {r['fwd_bwd_ms']:.3f} | {speed} | {peak} | {r['max_diff']:.2e} |")
    return report
