#!/usr/bin/env python3
"""Benchmark: full fine-tune of a Llama-3.2-1B-shaped model, trainhub native vs plain HF (and FP8).

One run, one GPU, up to ten variants, each in its own process (clean peak memory):

  native          `train --config <job>` through the hub and the native engine (trainhub's own
                  decoder, engine/models; chunked loss), metrics read from its metrics.jsonl
  native+compile  the same with backend.compile: true
  native-eagerloss+compile  the same with train.loss: eager (the full logits, compiled with the head)
  native+compile+kernels    native+compile with backend.kernels: triton (engine/kernels: RMSNorm, RoPE,
                  SwiGLU, fused linear + cross-entropy); every other native variant runs kernels: none
  native+compile+liger      the same with Liger-Kernel's ops (backend.kernels: liger; needs liger-kernel)
  native+kernels  backend.kernels triton without compile
  ...+lora        the same variant with adapter lora (r 16, alpha 32, all linear layers, bf16 base weights):
                  --variants lora runs native+compile+lora against native+compile+kernels+lora (fused LoRA)
  native-hf       the native engine over transformers' LlamaForCausalLM (model.impl: hf, eager
                  loss): the path every native run took before the own model
  native-hf+compile  the same with backend.compile: true
  hf-eager        a hand-written loop over transformers' LlamaForCausalLM (sdpa attention)
  hf-compile      the same loop over torch.compile(model)
  hf-liger, hf-liger-compile  the same loops with Liger-Kernel patched into transformers' Llama
                  (apply_liger_kernel_to_llama: RoPE, RMSNorm, SwiGLU, fused linear + cross-entropy; needs
                  liger-kernel): the peer whose peak memory issue 23 asks native to stay under
  native+compile+fp8-RECIPE  native+compile with train.precision {type: fp8, recipe: RECIPE} (tensorwise,
                  rowwise, rowwise_with_gw_hp; engine/fp8.py's measured filter): the result carries the
                  filter's choice per layer (the start row's fp8 notes)
  native+compile+lora[+fp8-tensorwise]  LoRA rank 16 on every Linear, bf16 base vs float8 base

--shape 8b-slice: Llama-3-8B's layer sizes (hidden 4096, MLP 14336, 32 heads, 8 KV heads, vocab 128256)
at seq 4096, micro-batch 2, --layers blocks (default 8: ~50 GB with AdamW's fp32 state on an 80 GB H100),
the shape the FP8 issue's 1.3x target is set on.

A native variant takes modifiers after `+` (issue 23's memory part): compile; full or selective
(train.grad_checkpointing); offload (train.activation_offload); lora or qlora (adapter r=16, alpha 32, all
linear layers, over a random-init bfloat16 base saved once as an HF folder; qlora: its linear weights in
NF4). E.g. `native+compile+selective+offload`, `native+qlora`. --seq and --micro-batch change the shape's
row length and rows per micro-batch (seq 8192, micro-batch 1: the long-row case).

`+cudnn`: backend.sdpa cudnn (cuDNN's fused attention first where torch takes the call for it).
`+profile` traces the last two warm-up steps (train.profile) and adds the GPU's busy share of them to the result:
of the window, and from its first kernel to its last (engine/profile.py says why both).

A native variant may name a distributed strategy (not in the default list): `native+compile+fsdp2` runs
FSDP2 in one process (`+keep`: reshard_after_forward false; `+bf16gather`: param_dtype bfloat16, reduce_dtype
float32; `+bf16reduce` with it: reduce_dtype bfloat16, which loses nothing in a group of one, where nothing is summed), `native+compile+ddpx2` / `native+compile+fsdp2x2` two processes through torchrun
(micro-batch per process, so the global batch and tokens/s double with perfect scaling); research/gpu_dist.sh.

Same model shape (hidden 2048, MLP 8192, 16 layers, 32 heads, 8 KV heads, vocab
128256, tied embeddings, rope theta 500000), random init, fp32 master weights
with bf16 autocast, fused AdamW, micro-batch 4 x seq 2048, random token ids.
Throughput is measured over the steps after the warm-up; MFU uses trainhub's
formula (6N + 12*L*H*Q*T per token over the GPU's dense bf16 peak) for every
variant. Results: research/results/native_full_ft.md (the table) and the JSON
written to --out.

    PYTHONPATH=backend python research/bench_native_full_ft.py --out results.json
    PYTHONPATH=backend python research/bench_native_full_ft.py --tiny      # CPU smoke test of the script
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LLAMA_1B = dict(hidden_size=2048, intermediate_size=8192, num_layers=16, num_heads=32, num_kv_heads=8,
                vocab_size=128256, rope_theta=500000.0, seq=2048, micro_batch=4)
LLAMA_8B_SLICE = dict(hidden_size=4096, intermediate_size=14336, num_layers=8, num_heads=32, num_kv_heads=8,
                      vocab_size=128256, rope_theta=500000.0, seq=4096, micro_batch=2)
SHAPES = {"1b": LLAMA_1B, "8b-slice": LLAMA_8B_SLICE}
TINY = dict(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
            vocab_size=1024, rope_theta=10000.0, seq=64, micro_batch=2)
FP8_RECIPES = ("tensorwise", "rowwise", "rowwise_with_gw_hp")
VARIANTS = ("native", "native+compile", "native-eagerloss+compile", "native-hf", "native-hf+compile", "hf-eager",
            "hf-compile", *(f"native+compile+fp8-{r}" for r in FP8_RECIPES), "native+compile+lora",
            "native+compile+lora+fp8-tensorwise")
# eagerloss: train.loss eager (full logits) instead of the chunked default
KERNEL_VARIANTS = ("native+compile", "native+compile+kernels", "native+kernels", "native+compile+liger")
"""--variants kernels: the kernels-on vs -off comparison (research/gpu_kernels.sh)."""
LORA_VARIANTS = ("native+compile+lora", "native+compile+kernels+lora")
"""--variants lora: the same for LoRA r=16 (the fused LoRA layers of engine/kernels/lora.py included)."""
SPECIALS = ["<|pad|>", "<|im_end|>", "<|im_start|>"]
LOG_EVERY = 5  # the native engine syncs (loss.item()) once per logged step, as a user's run would


def make_tokenizer_and_data(folder: Path, shape: dict, n_tokens: int) -> tuple[Path, Path]:
    """A word-level tokenizer of exactly vocab_size entries, and text whose tokens are uniformly random ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = [f"w{i}" for i in range(shape["vocab_size"] - len(SPECIALS))]
    vocab = {t: i for i, t in enumerate(SPECIALS + words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<|pad|>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|pad|>", eos_token="<|im_end|>")
    tok_dir = folder / "tokenizer"
    tok.save_pretrained(tok_dir)
    rng = random.Random(0)
    data = folder / "random.jsonl"
    with open(data, "w") as f:
        left = n_tokens
        while left > 0:
            n = min(left, 4096)
            f.write(json.dumps({"text": " ".join(rng.choice(words) for _ in range(n))}) + "\n")
            left -= n + 1  # +1: the EOS appended to each document
    return tok_dir, data


LORA_RANK = 16


def flops_per_token(shape: dict, adapter: str | None = None) -> float:
    """trainhub's formula (metrics/flops.py): 6N + attention for a full fine-tune; with an adapter the base
    weights are frozen (4 FLOPs each: forward and input gradient) and the rank-16 adapters on every block
    linear train (6 each), as the metric log's own mfu counts them."""
    h, f, layers, heads, kv = (shape[k] for k in ("hidden_size", "intermediate_size", "num_layers", "num_heads",
                                                  "num_kv_heads"))
    head_dim = h // heads
    per_layer = h * h * 2 + 2 * h * kv * head_dim + 3 * h * f + 2 * h  # q,o + k,v + mlp + norms
    n = layers * per_layer + shape["vocab_size"] * h + h  # tied embedding counted once (the head matmul)
    attention = 12 * layers * heads * head_dim * shape["seq"]
    if adapter is None:
        return 6 * n + attention
    linears = [(h, h), (h, kv * head_dim), (h, kv * head_dim), (h, h), (h, f), (h, f), (f, h)]
    trainable = layers * LORA_RANK * sum(i + o for i, o in linears)
    return 4 * n + 6 * trainable + attention


# ----------------------------------------------------------------------------- variants (child processes)


def distributed_of(mods) -> dict | None:
    """`+ddp`, `+fsdp2`, `+fsdp2x2` among a variant's modifiers: the job's distributed section (processes after x)."""
    for part in mods:
        m = re.fullmatch(r"(ddp|fsdp2)(?:x(\d+))?", part)
        if m:
            return {"strategy": m[1], "nproc_per_node": int(m[2] or 1)}
    return None


def save_base(shape: dict, tok_dir: Path, folder: Path) -> Path:
    """A random-init bfloat16 LlamaForCausalLM of the shape, with the tokenizer, saved once: the base the LoRA and
    QLoRA variants adapt (qlora needs a model.path)."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=shape["vocab_size"], hidden_size=shape["hidden_size"],
                         intermediate_size=shape["intermediate_size"], num_hidden_layers=shape["num_layers"],
                         num_attention_heads=shape["num_heads"], num_key_value_heads=shape["num_kv_heads"],
                         max_position_embeddings=shape["seq"], rope_theta=shape["rope_theta"],
                         tie_word_embeddings=True, pad_token_id=0, eos_token_id=1)
    AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tok_dir).save_pretrained(folder)
    return folder


def run_native(shape: dict, steps: int, warmup: int, compile_: bool, tok_dir: Path, data: Path, work: Path,
               impl: str = "auto", loss: str = "auto", mods: frozenset = frozenset()) -> dict:
    """mods (the variant's +modifiers but compile): full, selective, offload (checkpointing), lora, qlora,
    kernels (backend.kernels triton), liger, fp8-RECIPE."""
    import yaml

    run_dir = work / (f"native-{impl}-{loss}" + ("-compile" if compile_ else "") + "".join(f"-{m}" for m in sorted(mods)))
    distributed = distributed_of(mods)
    ckpt = "selective" if "selective" in mods else "full" if "full" in mods else "none"
    kernels = "triton" if "kernels" in mods else "liger" if "liger" in mods else "none"
    fp8 = next((m.split("-", 1)[1] for m in mods if m.startswith("fp8-")), None)
    precision = {"type": "fp8", "recipe": fp8} if fp8 else "auto"
    job = {
        "name": "bench-native", "output_dir": str(run_dir), "seed": 0,
        "backend": {"type": "native", "compile": compile_, "kernels": kernels,
                    "sdpa": "cudnn" if "cudnn" in mods else "auto"},
        "model": {"init": {"family": "llama", "hidden_size": shape["hidden_size"],
                           "intermediate_size": shape["intermediate_size"], "num_layers": shape["num_layers"],
                           "num_heads": shape["num_heads"], "num_kv_heads": shape["num_kv_heads"],
                           "max_position_embeddings": shape["seq"], "rope_theta": shape["rope_theta"],
                           "tie_embeddings": True, "tokenizer": {"type": "path", "path": str(tok_dir)}},
                  "dtype": "float32", "attention": "sdpa", "impl": impl},
        "method": "pretrain",
        "data": {"train": str(data), "format": "text", "max_length": shape["seq"], "shuffle": False},
        "optim": {"type": "adamw", "lr": 1e-4, "weight_decay": 0.1}, "schedule": {"warmup_steps": 2},
        "train": {"micro_batch_size": shape["micro_batch"], "max_steps": warmup + steps, "precision": precision,
                  "log_every": LOG_EVERY, "grad_clip": 1.0, "loss": "eager" if impl == "hf" else loss},
        "log": {"console": "plain"},
    }
    job["train"].update(grad_checkpointing=ckpt, activation_offload="offload" in mods)
    if "profile" in mods:  # the last two warm-up steps traced (engine/profile.py; outside the timed steps): GPU busy
        job["train"]["profile"] = {"start": max(1, warmup - 1), "steps": 2}  # share, with a boundary between steps
    adapter = "qlora" if "qlora" in mods else "lora" if "lora" in mods else None
    if adapter:  # a saved base in bf16 (QLoRA's setting), adapters r=16 on every linear layer
        base = save_base(shape, tok_dir, work / "base")
        job["model"] = {"path": str(base), "dtype": "bfloat16", "attention": "sdpa", "impl": impl}
        job["adapter"] = {"type": adapter, "rank": LORA_RANK, "alpha": 2 * LORA_RANK}
        job["optim"]["lr"] = 1e-3
    if distributed:  # several processes: micro_batch per process, so tokens/s is global (docs/distributed.md)
        job["distributed"] = distributed
        if distributed["strategy"] == "fsdp2":  # +keep: no re-gather for the backward; +bf16gather: bf16 weights
            job["distributed"]["fsdp2"] = {"reshard_after_forward": "keep" not in mods}
            if "bf16gather" in mods:  # +bf16reduce: gradients reduced in bf16 too (exact in a group of one)
                job["distributed"]["fsdp2"].update(param_dtype="bfloat16",
                                                   reduce_dtype="bfloat16" if "bf16reduce" in mods else "float32")
    config = work / f"{run_dir.name}.yaml"
    config.write_text(yaml.safe_dump(job))
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "trainhub", "train", "--config", str(config)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"native run failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    rows = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    train = [r for r in rows if r["event"] == "train"]
    timed = [r for r in train if r["step"] > warmup]
    start = next(r for r in rows if r["event"] == "start")
    fp8_layers = [n for n in start["notes"] if n.startswith(("fp8 ", "  "))]  # engine/fp8.py Fp8Report.lines
    tokens = sum(r["tokens_per_s"] and (r["tokens"] - p["tokens"]) for p, r in zip(train, train[1:], strict=False)
                 if r["step"] > warmup)
    seconds = sum((r["tokens"] - p["tokens"]) / r["tokens_per_s"] for p, r in zip(train, train[1:], strict=False)
                  if r["step"] > warmup)
    profile = json.loads((run_dir / "profile" / "summary.json").read_text()) if "profile" in mods else None
    shutil.rmtree(run_dir)  # a 1B run's last checkpoint is ~13 GB: keep the disk for the next variant
    return {"tokens_per_s": tokens / seconds, "peak_mem_gb": max(r["mem_gb"] for r in train),
            "final_loss": timed[-1]["loss"], "mfu_logged": sum(r["mfu"] or 0 for r in timed) / len(timed),
            "wall_s": time.time() - t0, **({"fp8_layers": fp8_layers} if fp8 else {}),
            **({"gpu_busy_share": profile["gpu_busy_share"], "gpu_busy_share_span": profile.get("gpu_busy_share_span"),
                "profile_steps": profile["steps"], "profile_top_ops": profile["top_ops"][:8]}
               if profile else {})}


def run_hf(shape: dict, steps: int, warmup: int, compile_: bool, liger: bool = False) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    if liger:  # patches transformers' Llama classes in this process (each variant has its own)
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=shape["vocab_size"], hidden_size=shape["hidden_size"],
                         intermediate_size=shape["intermediate_size"], num_hidden_layers=shape["num_layers"],
                         num_attention_heads=shape["num_heads"], num_key_value_heads=shape["num_kv_heads"],
                         max_position_embeddings=shape["seq"], rope_theta=shape["rope_theta"],
                         tie_word_embeddings=True)
    config._attn_implementation = "sdpa"
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).to(device)
    forward = torch.compile(model) if compile_ else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1, fused=device.type == "cuda")
    bs, seq = shape["micro_batch"], shape["seq"]
    g = torch.Generator(device="cpu").manual_seed(0)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = None
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        ids = torch.randint(len(SPECIALS), shape["vocab_size"], (bs, seq), generator=g).to(device)
        with autocast:
            loss = forward(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    final_loss = loss.item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None
    return {"tokens_per_s": steps * bs * seq / seconds, "peak_mem_gb": peak, "final_loss": final_loss}


# ----------------------------------------------------------------------------- driver


def shape_of(args) -> dict:
    if args.tiny:
        return dict(TINY)
    shape = dict(SHAPES[args.shape])
    if args.layers:
        shape["num_layers"] = args.layers
    if args.seq:
        shape["seq"] = args.seq
    if args.micro_batch:
        shape["micro_batch"] = args.micro_batch
    return shape


def child(args) -> None:
    shape = shape_of(args)
    work = Path(args.work)
    base, *mods = args.variant.split("+")
    if base.startswith("native"):
        known = {"compile", "full", "selective", "offload", "lora", "qlora", "kernels", "liger", "cudnn", "keep",
                 "bf16gather", "bf16reduce",
                 "profile"}
        unknown = {m for m in mods if m not in known and m.removeprefix("fp8-") not in FP8_RECIPES
                   and not re.fullmatch(r"(ddp|fsdp2)(x\d+)?", m)}
        if unknown:
            raise SystemExit(f"unknown variant modifier(s) {sorted(unknown)} in {args.variant}")
        result = run_native(shape, args.steps, args.warmup, "compile" in mods,
                            work / "tokenizer", work / "random.jsonl", work,
                            impl="hf" if base.startswith("native-hf") else "auto",
                            loss="eager" if "eagerloss" in base else "auto",
                            mods=frozenset(mods) - {"compile"})
    elif base in ("hf-eager", "hf-compile", "hf-liger", "hf-liger-compile") and not mods:
        result = run_hf(shape, args.steps, args.warmup, base.endswith("compile"), liger="liger" in base)
    else:
        raise SystemExit(f"unknown variant {args.variant}")
    print("RESULT " + json.dumps(result), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny shape, to check the script on CPU")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="1b", help="1b (default) or 8b-slice")
    parser.add_argument("--layers", type=int, default=None, help="override the shape's number of blocks")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (compile, allocator); "
                        f"a multiple of {LOG_EVERY}")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated; 'kernels' means {','.join(KERNEL_VARIANTS)}; "
                             f"'lora' means {','.join(LORA_VARIANTS)}")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--seq", type=int, default=None, help="row length (default: the shape's, 2048)")
    parser.add_argument("--micro-batch", type=int, default=None, help="rows per micro-batch (default: the shape's, 4)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup % LOG_EVERY or args.steps % LOG_EVERY:
        parser.error(f"--warmup and --steps must be multiples of {LOG_EVERY}")
    if args.variant:
        child(args)
        return 0

    shape = shape_of(args)
    import torch

    from trainhub.metrics.flops import peak_flops

    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = peak_flops(device_name)
    fpt = flops_per_token(shape)
    results = {"device": device_name, "torch": torch.__version__, "shape": shape, "steps": args.steps,
               "warmup": args.warmup, "flops_per_token": fpt, "peak_flops": peak, "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        named = {"kernels": KERNEL_VARIANTS, "lora": LORA_VARIANTS}
        variants = named[args.variants] if args.variants in named else args.variants.split(",")
        world = max((distributed_of(v.split("+")[1:]) or {"nproc_per_node": 1})["nproc_per_node"] for v in variants)
        n_tokens = (args.warmup + args.steps + 2) * shape["micro_batch"] * shape["seq"] * world
        make_tokenizer_and_data(work, shape, n_tokens)
        for variant in variants:
            print(f"--- {variant}", flush=True)
            cmd = [sys.executable, __file__, "--variant", variant, "--work", str(work), "--steps", str(args.steps),
                   "--warmup", str(args.warmup), "--shape", args.shape] + (["--tiny"] if args.tiny else []) + \
                (["--layers", str(args.layers)] if args.layers else []) + \
                (["--seq", str(args.seq)] if args.seq else []) + \
                (["--micro-batch", str(args.micro_batch)] if args.micro_batch else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode or not lines:
                print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n")
                results["variants"][variant] = {"error": (proc.stderr or proc.stdout)[-1500:]}
                continue
            r = json.loads(lines[-1][len("RESULT "):])
            mods = variant.split("+")[1:]
            adapter = "qlora" if "qlora" in mods else "lora" if "lora" in mods else None
            r["flops_per_token"] = flops_per_token(shape, adapter)  # LoRA's frozen base: 4N (metrics/flops.py)
            r["mfu"] = r["flops_per_token"] * r["tokens_per_s"] / peak if peak else None
            results["variants"][variant] = r
            print(json.dumps(r), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\n{device_name}, torch {torch.__version__}, {fpt / 1e9:.2f} GFLOP/token, "
          f"{args.steps} timed steps after {args.warmup} warm-up\n")
    for name, r in results["variants"].items():
        if r.get("fp8_layers"):
            print(f"{name}: " + "\n".join(r["fp8_layers"]))
        if r.get("gpu_busy_share") is not None:
            span = r.get("gpu_busy_share_span")
            print(f"{name}: GPU busy {r['gpu_busy_share']:.1%} of the traced window ({r.get('profile_steps')} steps)"
                  + (f", {span:.1%} from its first kernel to its last" if span is not None else ""))
    base = results["variants"].get("native+compile", {}).get("tokens_per_s")
    print("\n| variant | tokens/s | vs native+compile | MFU (bf16 peak) | peak GB | final loss |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results["variants"].items():
        if "error" in r:
            print(f"| {name} | error | | | | |")
            continue
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        mem = f"{r['peak_mem_gb']:.1f}" if r["peak_mem_gb"] is not None else "n/a"
        ratio = f"{r['tokens_per_s'] / base:.3f}x" if base else "n/a"
        print(f"| {name} | {r['tokens_per_s']:,.0f} | {ratio} | {mfu} | {mem} | {r['final_loss']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
