#!/usr/bin/env python3
"""The best a training step of one shape can do on this GPU: its matmuls, its attention and its optimizer
step, each timed alone, summed, and read as MFU (issue 23: how far 60% is from the hardware's reach).

One step of a Llama-shaped model over `tokens` tokens is, at the least:
  per block, per linear (q, k, v, o, gate, up, down) three GEMMs: forward x @ W^T, the input gradient
    dy @ W and the weight gradient dy^T @ x, bf16 in and out with fp32 accumulation (cuBLAS);
  per block, attention forward and backward (SDPA's flash kernel, causal, grouped KV heads);
  the head's three GEMMs at the vocabulary's width;
  the optimizer: the gradient norm and one fused AdamW step over fp32 weights of the model's shapes.
Everything else a real step runs (norms, RoPE, SwiGLU's product, the loss's softmax, the casts, the host's
launches) is counted as free here, so the MFU this prints is an upper bound for the shape: a step that
reaches it has made everything else cost nothing. MFU uses trainhub's formula (metrics/flops.py: 6N +
12*L*H*Q*T per token over the GPU's dense bf16 peak), the one every benchmark table uses.

    PYTHONPATH=backend python3 research/bench_roofline.py --out roofline.json          # GPU, 1B shape
    PYTHONPATH=backend python3 research/bench_roofline.py --shape 8b-slice --layers 8  # FP8 issue's shape
    PYTHONPATH=backend python3 research/bench_roofline.py --frozen                     # LoRA's bound
    PYTHONPATH=backend python3 research/bench_roofline.py --shape 8b-slice --fp8       # FP8's bound (MFU
                                                                   # still over the bf16 peak, as the tables)
    PYTHONPATH=backend python3 research/bench_roofline.py --tiny                       # CPU smoke test

--frozen: the base weights are frozen (LoRA, QLoRA's bf16 equivalent): no weight-gradient GEMMs and no
optimizer over them, FLOPs 4N per token (metrics/flops.py); the adapters' rank-16 GEMMs are timed as
engine/kernels/lora.py runs them (rows "lora forward" and "lora backward": thin, so each costs the passes it
makes over the activations), their optimizer step left out. Each way, the path kernels/lora.py takes for the
shape (stacked into the base GEMM, or an addmm_ into its result) is summed, the other shown beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kernel_bench import _median_ms  # noqa: E402

from trainhub.metrics.flops import flops_per_token, peak_flops  # noqa: E402

SHAPES = {  # hidden, mlp, layers, heads, kv heads, vocab, seq, micro-batch, tied head
    "1b": dict(hidden=2048, mlp=8192, layers=16, heads=32, kv_heads=8, vocab=128256, seq=2048, batch=4, tied=True),
    # tied as research/bench_native_full_ft.py's slice is (its job ties every shape); until 2026-12-08 this said
    # untied, which counted the head's 525M parameters twice in AdamW's time (34.5 ms against 28.0)
    "8b-slice": dict(hidden=4096, mlp=14336, layers=8, heads=32, kv_heads=8, vocab=128256, seq=4096, batch=2,
                     tied=True),
    "tiny": dict(hidden=64, mlp=160, layers=2, heads=4, kv_heads=2, vocab=256, seq=32, batch=2, tied=True),
}


def linears(c: dict) -> list[tuple[str, int, int]]:
    """(name, in features, out features) of one block's linear layers."""
    h, d = c["hidden"], c["hidden"] // c["heads"]
    kv = c["kv_heads"] * d
    return [("q", h, h), ("k", h, kv), ("v", h, kv), ("o", h, h), ("gate", h, c["mlp"]), ("up", h, c["mlp"]),
            ("down", c["mlp"], h)]


def matmul_weights(c: dict) -> int:
    """Weights that take part in a matmul (metrics/flops.py's N): the blocks' linears and the head."""
    return c["layers"] * sum(k * n for _, k, n in linears(c)) + c["hidden"] * c["vocab"]


def fp8_gemms(x: torch.Tensor, w: torch.Tensor, dy: torch.Tensor) -> dict:
    """The three GEMMs as torch._scaled_mm with tensorwise scales, operands already float8 in the layouts
    cuBLAS wants (row-major left, column-major right): what torchao's tensorwise recipe runs, without its
    casts (amax, scale, cast and transposed copies), which a bound leaves out as it leaves out every
    element-wise pass."""
    f8, one = torch.float8_e4m3fn, torch.ones((), device=x.device)
    x8, w8, dy8 = x.to(f8), w.to(f8), dy.to(f8)
    w8_cols = w8.t().contiguous().t()  # [N, K] column-major: the right operand of dy @ W
    dyt8, x8_cols = dy8.t().contiguous(), x8.t().contiguous().t()

    def mm(a, b):
        return torch._scaled_mm(a, b, one, one, out_dtype=torch.bfloat16)
    return {"forward": lambda: mm(x8, w8.t()), "input grad": lambda: mm(dy8, w8_cols),
            "weight grad": lambda: mm(dyt8, x8_cols)}


LORA_RANK = 16


def lora_gemms(x: torch.Tensor, dy: torch.Tensor, k: int, n: int) -> dict:
    """The low-rank work engine/kernels/lora.py adds to a frozen linear, each way on both of its paths, as
    {row: (fn, minus, summed)}: a row's time is fn's less minus's (the base GEMM a stacked GEMM replaces), and
    the path kernels/lora.stacked picks for the shape is summed, the other shown beside it.
      forward, addmm:   x A^T, then the addmm_ of s (x A^T) B^T into y (a read and a write of y)
      forward, stacked: x A^T, then [x | s xa] [W | B]^T, less the base x W^T it replaces
      backward, addmm:   d y B, d y^T xa, d xa^T x, then the addmm_ of d xa A into d x
      backward, stacked: the same three, then [dy | d xa] [W ; A], less the base d y W it replaces
    Each is thin (rank 16): they cost the passes over x, y, d y and d x they make."""
    from trainhub.engine.kernels.lora import stacked

    a = torch.randn(LORA_RANK, k, device=x.device, dtype=x.dtype)
    b = torch.randn(n, LORA_RANK, device=x.device, dtype=x.dtype)
    w = torch.randn(n, k, device=x.device, dtype=x.dtype)
    y, dx, xa = x.new_empty(x.shape[0], n), torch.empty_like(x), x @ a.t()

    def forward_addmm():
        y.addmm_(x @ a.t(), b.t(), alpha=0.5)

    def forward_stacked():
        torch.cat([x, x @ a.t() * 0.5], 1) @ torch.cat([w, b], 1).t()

    def thin_grads():
        d_xa = dy @ b
        _ = dy.t() @ xa, d_xa.t() @ x
        return d_xa

    def backward_addmm():
        dx.addmm_(thin_grads(), a)

    def backward_stacked():
        torch.cat([dy, thin_grads()], 1) @ torch.cat([w, a], 0)

    rows = {}
    for way, taken, paths in (("forward", stacked(k, n, LORA_RANK),
                               ((forward_stacked, lambda: F.linear(x, w)), (forward_addmm, None))),
                              ("backward", stacked(n, k, LORA_RANK),
                               ((backward_stacked, lambda: dy @ w), (backward_addmm, None)))):
        mine, other = paths if taken else paths[::-1]
        rows[f"lora {way}"], rows[f"lora {way}, the other path"] = (*mine, True), (*other, False)
    return rows


def gemm_rows(c: dict, device, dtype, repeat: int, warmup: int, frozen: bool = False,
              fp8: bool = False) -> list[dict]:
    """Each GEMM's time; `fp8`: the blocks' linears in float8 (the head stays bf16, as the fused loss keeps it)."""
    tokens = c["seq"] * c["batch"]
    rows = []
    for name, k, n in linears(c) + [("head", c["hidden"], c["vocab"])]:
        x = torch.randn(tokens, k, device=device, dtype=dtype)
        w = torch.randn(n, k, device=device, dtype=dtype)
        dy = torch.randn(tokens, n, device=device, dtype=dtype)
        per = {"forward": lambda x=x, w=w: F.linear(x, w), "input grad": lambda dy=dy, w=w: dy @ w,
               "weight grad": lambda dy=dy, x=x: dy.t() @ x}
        if fp8 and name != "head":
            per, name = fp8_gemms(x, w, dy), f"{name} fp8"
        if frozen:
            del per["weight grad"]
            if name != "head":  # the adapters' rank-16 work as kernels/lora.py runs it, beside the frozen GEMMs
                per.update(lora_gemms(x, dy, k, n))
        for kind, fn in per.items():
            minus, summed = None, True
            if isinstance(fn, tuple):  # (what, less what, summed): lora_gemms' rows
                fn, minus, summed = fn
            for _ in range(warmup):
                fn()
            ms = _median_ms(fn, device, repeat)
            if minus is not None:
                ms -= _median_ms(minus, device, repeat)
            count = (1 if name == "head" else c["layers"]) if summed else 0
            thin = kind.startswith("lora")  # rank-16 work: memory passes, no TFLOP/s worth quoting
            rows.append({"op": f"{name} {kind}", "shape": f"{tokens}x{k}x{n}", "count": count, "ms": ms,
                         "tflops": None if thin else 2 * tokens * k * n / ms / 1e9})
    return rows


ATTENTION_BACKENDS = ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION")
"""SDPA's kernels timed for the attention row: the fastest is summed (a bound takes the best kernel; until
2026-12-08 flash's was, while the traced step ran cuDNN's: 0.89 against 1.35 ms a layer at the 1B shape), the
others are shown beside it (count 0: not summed)."""


def attention_rows(c: dict, device, dtype, repeat: int, warmup: int) -> list[dict]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    d = c["hidden"] // c["heads"]
    q = torch.randn(c["batch"], c["heads"], c["seq"], d, device=device, dtype=dtype, requires_grad=True)
    k = torch.randn(c["batch"], c["kv_heads"], c["seq"], d, device=device, dtype=dtype, requires_grad=True)
    v = torch.randn_like(k, requires_grad=True)
    g = torch.randn_like(q)
    flops = 12 * c["heads"] * d * c["seq"] * c["seq"] * c["batch"]  # the formula's term, causal not discounted
    backends = ATTENTION_BACKENDS + ("CUDNN_ATTENTION kv repeated",) if device.type == "cuda" else ("MATH",)
    rep = c["heads"] // c["kv_heads"]
    rows = []
    for label in backends:
        name, repeat_kv = label.split()[0], label.endswith("repeated")  # repeated: GQA's k, v copied per head

        def step(backend=getattr(SDPBackend, name), repeat_kv=repeat_kv):
            kk, vv = (t.repeat_interleave(rep, dim=1) for t in (k, v)) if repeat_kv else (k, v)
            with sdpa_kernel([backend]):
                out = F.scaled_dot_product_attention(q, kk, vv, is_causal=True, enable_gqa=not repeat_kv)
            q.grad = k.grad = v.grad = None
            out.backward(g)

        try:
            for _ in range(warmup):
                step()
            ms = _median_ms(step, device, repeat)
        except RuntimeError as e:  # a kernel that does not take this shape or GQA says so, and is skipped
            print(f"attention {label}: not run ({str(e).splitlines()[0][:120]})")
            continue
        rows.append({"op": f"attention fwd+bwd, {label.lower().replace('_attention', '')}",
                     "shape": f"{c['batch']}x{c['heads']}/{c['kv_heads']}x{c['seq']}x{d}",
                     "count": 0, "ms": ms, "tflops": flops / ms / 1e9})
    if rows:  # the bound sums the fastest (on the H100: cuDNN's, which `backend.sdpa: auto` reached in the traced step)
        min(rows, key=lambda r: r["ms"])["count"] = c["layers"]
    return rows


def optimizer_row(c: dict, device, repeat: int, warmup: int) -> dict:
    shapes = [(n, k) for _ in range(c["layers"]) for _, k, n in linears(c)]
    shapes += [(c["hidden"],)] * (2 * c["layers"] + 1) + [(c["vocab"], c["hidden"])] * (1 if c["tied"] else 2)
    params = [torch.zeros(s, device=device, requires_grad=True) for s in shapes]
    for p in params:
        p.grad = torch.randn_like(p) * 1e-3
    opt = torch.optim.AdamW(params, lr=1e-4, fused=device.type == "cuda")

    def step():
        torch.nn.utils.get_total_norm([p.grad for p in params])
        opt.step()

    for _ in range(warmup):
        step()
    ms = _median_ms(step, device, repeat)
    n = sum(p.numel() for p in params)
    return {"op": "grad norm + fused AdamW (fp32)", "shape": f"{n / 1e6:.0f}M params", "count": 1, "ms": ms,
            "tflops": None, "gb_s": 32 * n / ms / 1e6}  # read p, g (x2), m, v; write p, m, v: ~32 B/param


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="1b", choices=SHAPES)
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--seq", type=int, default=None)
    p.add_argument("--micro-batch", type=int, default=None)
    p.add_argument("--frozen", action="store_true", help="frozen base weights (LoRA): no weight gradients")
    p.add_argument("--fp8", action="store_true", help="the blocks' GEMMs in float8 (tensorwise), head in bf16")
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--tiny", action="store_true", help="the tiny shape on CPU in float32: a smoke test")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    c = dict(SHAPES["tiny" if args.tiny else args.shape])
    for key, value in (("layers", args.layers), ("seq", args.seq), ("batch", args.micro_batch)):
        if value:
            c[key] = value
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    repeat, warmup = (2, 1) if args.tiny else (args.repeat, args.warmup)

    if args.fp8 and device.type != "cuda":
        p.error("--fp8 times torch._scaled_mm: a CUDA GPU with float8 tensor cores (H100, H200) only")
    rows = gemm_rows(c, device, dtype, repeat, warmup, args.frozen, args.fp8)
    rows += attention_rows(c, device, dtype, repeat, warmup)
    if not args.frozen:
        rows.append(optimizer_row(c, device, repeat, warmup))
    total_ms = sum(r["ms"] * r["count"] for r in rows)
    tokens = c["seq"] * c["batch"]
    d = c["hidden"] // c["heads"]
    n = matmul_weights(c)
    per_token = flops_per_token(n_frozen=n if args.frozen else 0, n_trainable=0 if args.frozen else n,
                                layers=c["layers"], heads=c["heads"], head_dim=d, seq_len=c["seq"])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = peak_flops(name)
    bound = {"tokens_per_s": tokens / total_ms * 1e3, "step_ms": total_ms,
             "mfu": per_token * tokens / (total_ms / 1e3) / peak if peak else None}
    result = {"device": name, "torch": torch.__version__, "shape": c, "frozen": args.frozen, "fp8": args.fp8,
              "flops_per_token": per_token,
              "rows": rows, "bound": bound}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))

    print(f"\n{name}, shape {args.shape if not args.tiny else 'tiny'}{' frozen (LoRA)' if args.frozen else ''}"
          f"{' fp8 blocks' if args.fp8 else ''}: "
          f"{tokens} tokens per step, "
          f"{per_token / 1e9:.2f} GFLOP/token")
    print("| op | shape | x | ms each | ms in step | share | TFLOP/s |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in rows:
        rate = (f"{r['tflops']:.0f}" if r["tflops"] is not None else f"{r['gb_s']:.0f} GB/s" if r.get("gb_s")
                else "rank 16")
        counted = (f"{r['ms'] * r['count']:.2f} | {r['ms'] * r['count'] / total_ms:.1%}" if r["count"]
                   else "beside, not summed | ")
        print(f"| {r['op']} | {r['shape']} | {r['count']} | {r['ms']:.3f} | {counted} | {rate} |")
    mfu = f"{bound['mfu']:.1%}" if bound["mfu"] is not None else "n/a (no known peak)"
    print(f"| bound: matmuls + attention + optimizer only | | | | {total_ms:.2f} | 100% | "
          f"{bound['tokens_per_s']:,.0f} tok/s, MFU {mfu} |")


if __name__ == "__main__":
    main()
