#!/usr/bin/env python3
"""Benchmark: peak memory and time of one training step of trainhub's own model under each activation
checkpointing mode (engine/models/checkpointing.py): none, full, selective, and with CPU offload on a GPU.

Each mode runs in a fresh subprocess (so one's allocations never colour another's): a Llama-shaped model
built from ModelArgs with random weights, one forward + backward of the chunked cross-entropy over
`--batch` x `--seq` random tokens. Reported per mode:

  peak_gb   the peak of live tensor bytes during forward + backward, above what existed before (weights
            and inputs are allocated first and not counted; the gradients are):
            CUDA: torch.cuda.max_memory_allocated(); CPU: torch.profiler's memory events (every
            allocation and free of torch's CPU allocator, their running sum in time order, maximum taken;
            the method of research/bench_loss.py)
  seconds   wall time of forward + backward (CUDA: mean of `--repeat` steps after a warm-up, synced)
  grad_max_diff  the largest |gradient - the first mode's gradient| over the first 4096 values of each
                 parameter's gradient (the modes must agree)

    PYTHONPATH=backend python research/bench_checkpointing.py                     # CPU, small shape
    PYTHONPATH=backend python research/bench_checkpointing.py --device cuda --dtype bfloat16 \\
        --hidden 2048 --intermediate 8192 --layers 16 --heads 32 --kv-heads 8 --vocab 128256 --seq 8192
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

MODES = ("none", "full", "selective", "none+offload", "full+offload", "selective+offload")


def peak_cpu_bytes(fn) -> tuple[int, object]:
    """(peak live bytes of torch's CPU allocator while fn() runs, above what was live before; fn's result)."""
    import torch

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    live = peak = 0
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    for e in sorted(events, key=lambda e: e.start_ns()):
        live += e.nbytes()
        peak = max(peak, live)
    return peak, result


def build(a, mode: str):
    import torch

    from trainhub.engine.models.args import ModelArgs
    from trainhub.engine.models.transformer import CausalLM, init_weights

    args = ModelArgs(model_type="llama", vocab_size=a.vocab, hidden_size=a.hidden, intermediate_size=a.intermediate,
                     num_hidden_layers=a.layers, num_attention_heads=a.heads, num_key_value_heads=a.kv_heads,
                     head_dim=a.hidden // a.heads, max_position_embeddings=max(a.seq, 2048))
    with torch.device("meta"):
        model = CausalLM(args)
    model.to_empty(device=a.device)
    model.tie_weights()
    model.reset_buffers()
    init_weights(model, 0)
    checkpointing, _, offload = mode.partition("+")
    model.grad_checkpointing = checkpointing
    model.activation_offload = bool(offload)
    return model.train()


def step(model, ids, dtype):
    import torch

    from trainhub.engine.loss import cross_entropy

    with torch.autocast(ids.device.type, dtype=dtype, enabled=dtype != torch.float32):
        loss = cross_entropy(model(ids), model.head_weight, ids, torch.tensor(ids.numel()), impl="chunked")
    loss.backward()
    return loss


def measure(a) -> dict:
    import torch

    torch.manual_seed(0)
    dtype = getattr(torch, a.dtype)
    model = build(a, a.mode)
    if a.compile:
        from trainhub.engine.models.own import compile_blocks

        compile_blocks(model)
    ids = torch.randint(0, a.vocab, (a.batch, a.seq), device=a.device, generator=torch.Generator(a.device).manual_seed(1))
    if a.device == "cpu":
        t0 = time.perf_counter()
        peak, loss = peak_cpu_bytes(lambda: step(model, ids, dtype))
        seconds = time.perf_counter() - t0
    else:
        step(model, ids, dtype)  # warm-up: kernels, workspaces, compilation
        model.zero_grad(set_to_none=False)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        loss = step(model, ids, dtype)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(a.repeat):
            step(model, ids, dtype)
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1e3 / a.repeat
    # a sample of every gradient (the first 4096 values of each): the comparison without 5 GB files at 1B
    grads = torch.cat([p.grad.flatten()[:4096].float() for p in model.parameters() if p.grad is not None]).cpu()
    if a.grads_out:
        torch.save(grads, a.grads_out)
    return {"mode": a.mode, "loss": loss.item(), "peak_gb": peak / 1e9, "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--intermediate", type=int, default=1024)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--seq", type=int, default=1024)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="torch.compile each block (engine's compile_blocks)")
    p.add_argument("--modes", default=None, help=f"comma-separated subset of {','.join(MODES)}")
    p.add_argument("--out", default=None, help="write the rows as JSON here")
    p.add_argument("--mode", default=None, help=argparse.SUPPRESS)  # one mode, in the child process
    p.add_argument("--grads-out", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.mode:
        print(json.dumps(measure(a)))
        return
    modes = a.modes.split(",") if a.modes else [m for m in MODES if a.device != "cpu" or "offload" not in m]
    import tempfile

    import torch

    rows, tmp = [], tempfile.mkdtemp()
    for mode in modes:
        grads = f"{tmp}/{mode}.pt"
        argv = [sys.executable, __file__, *sys.argv[1:], "--mode", mode, "--grads-out", grads]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        row = json.loads(out.strip().splitlines()[-1])
        row["grad_max_diff"] = (torch.load(grads) - torch.load(f"{tmp}/{modes[0]}.pt")).abs().max().item()
        rows.append(row)
    base = rows[0]
    print(f"\n{a.device} {a.dtype}: hidden {a.hidden}, MLP {a.intermediate}, {a.layers} layers, {a.heads}/{a.kv_heads} "
          f"heads, vocab {a.vocab}, {a.batch} x {a.seq} tokens{', compiled blocks' if a.compile else ''}\n")
    print(f"| mode | peak GB | vs {base['mode']} | s / step | vs {base['mode']} | loss | max grad diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['mode']} | {r['peak_gb']:.3f} | {r['peak_gb'] / base['peak_gb']:.2f}x | {r['seconds']:.3f} | "
              f"{r['seconds'] / base['seconds']:.2f}x | {r['loss']:.4f} | {r['grad_max_diff']:.1e} |")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"args": vars(a), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
