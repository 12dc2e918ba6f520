#!/usr/bin/env python3
"""Benchmark: full fine-tune of a Llama-3.2-1B-shaped model, trainhub native vs plain HF.

One run, one GPU, seven variants, each in its own process (clean peak memory):

  native          `train --config <job>` through the hub and the native engine (trainhub's own
                  decoder, engine/models; chunked loss), metrics read from its metrics.jsonl
  native+compile  the same with backend.compile: true
  native-eagerloss+compile  the same with train.loss: eager (the full logits, compiled with the head)
  native-hf       the native engine over transformers' LlamaForCausalLM (model.impl: hf, eager
                  loss): the path every native run took before the own model
  native-hf+compile  the same with backend.compile: true
  hf-eager        a hand-written loop over transformers' LlamaForCausalLM (sdpa attention)
  hf-compile      the same loop over torch.compile(model)

A native variant may name a distributed strategy (not in the default list): `native+compile+fsdp2` runs
FSDP2 in one process, `native+compile+ddpx2` / `native+compile+fsdp2x2` two processes through torchrun
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
TINY = dict(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
            vocab_size=1024, rope_theta=10000.0, seq=64, micro_batch=2)
VARIANTS = ("native", "native+compile", "native-eagerloss+compile", "native-hf", "native-hf+compile", "hf-eager",
            "hf-compile")  # eagerloss: train.loss eager (full logits) instead of the chunked default
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


def flops_per_token(shape: dict) -> float:
    h, f, layers, heads, kv = (shape[k] for k in ("hidden_size", "intermediate_size", "num_layers", "num_heads",
                                                  "num_kv_heads"))
    head_dim = h // heads
    per_layer = h * h * 2 + 2 * h * kv * head_dim + 3 * h * f + 2 * h  # q,o + k,v + mlp + norms
    n = layers * per_layer + shape["vocab_size"] * h + h  # tied embedding counted once (the head matmul)
    return 6 * n + 12 * layers * heads * head_dim * shape["seq"]


# ----------------------------------------------------------------------------- variants (child processes)


def distributed_of(variant: str) -> dict | None:
    """`+ddp`, `+fsdp2`, `+fsdp2x2` in a variant's name: the job's distributed section (processes after x)."""
    for part in variant.split("+")[1:]:
        m = re.fullmatch(r"(ddp|fsdp2)(?:x(\d+))?", part)
        if m:
            return {"strategy": m[1], "nproc_per_node": int(m[2] or 1)}
    return None


def run_native(shape: dict, steps: int, warmup: int, compile_: bool, tok_dir: Path, data: Path, work: Path,
               impl: str = "auto", loss: str = "auto", distributed: dict | None = None) -> dict:
    import yaml

    run_dir = work / (f"native-{impl}-{loss}" + ("-compile" if compile_ else "")
                      + (f"-{distributed['strategy']}x{distributed['nproc_per_node']}" if distributed else ""))
    job = {
        "name": "bench-native", "output_dir": str(run_dir), "seed": 0,
        "backend": {"type": "native", "compile": compile_},
        "model": {"init": {"family": "llama", "hidden_size": shape["hidden_size"],
                           "intermediate_size": shape["intermediate_size"], "num_layers": shape["num_layers"],
                           "num_heads": shape["num_heads"], "num_kv_heads": shape["num_kv_heads"],
                           "max_position_embeddings": shape["seq"], "rope_theta": shape["rope_theta"],
                           "tie_embeddings": True, "tokenizer": {"type": "path", "path": str(tok_dir)}},
                  "dtype": "float32", "attention": "sdpa", "impl": impl},
        "method": "pretrain",
        "data": {"train": str(data), "format": "text", "max_length": shape["seq"], "shuffle": False},
        "optim": {"type": "adamw", "lr": 1e-4, "weight_decay": 0.1}, "schedule": {"warmup_steps": 2},
        "train": {"micro_batch_size": shape["micro_batch"], "max_steps": warmup + steps, "precision": "auto",
                  "log_every": LOG_EVERY, "grad_clip": 1.0, "loss": "eager" if impl == "hf" else loss},
        "log": {"console": "plain"},
    }
    if distributed:  # several processes: micro_batch per process, so tokens/s is global (docs/distributed.md)
        job["distributed"] = distributed
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
    tokens = sum(r["tokens_per_s"] and (r["tokens"] - p["tokens"]) for p, r in zip(train, train[1:], strict=False)
                 if r["step"] > warmup)
    seconds = sum((r["tokens"] - p["tokens"]) / r["tokens_per_s"] for p, r in zip(train, train[1:], strict=False)
                  if r["step"] > warmup)
    shutil.rmtree(run_dir)  # a 1B run's last checkpoint is ~13 GB: keep the disk for the next variant
    return {"tokens_per_s": tokens / seconds, "peak_mem_gb": max(r["mem_gb"] for r in train),
            "final_loss": timed[-1]["loss"], "mfu_logged": sum(r["mfu"] or 0 for r in timed) / len(timed),
            "wall_s": time.time() - t0}


def run_hf(shape: dict, steps: int, warmup: int, compile_: bool) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

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


def child(args) -> None:
    shape = TINY if args.tiny else LLAMA_1B
    work = Path(args.work)
    if args.variant.startswith("native"):
        result = run_native(shape, args.steps, args.warmup, "compile" in args.variant.split("+"),
                            work / "tokenizer", work / "random.jsonl", work,
                            impl="hf" if args.variant.startswith("native-hf") else "auto",
                            loss="eager" if "eagerloss" in args.variant else "auto",
                            distributed=distributed_of(args.variant))
    else:
        result = run_hf(shape, args.steps, args.warmup, args.variant.endswith("compile"))
    print("RESULT " + json.dumps(result), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="a tiny shape, to check the script on CPU")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (compile, allocator); "
                        f"a multiple of {LOG_EVERY}")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warmup % LOG_EVERY or args.steps % LOG_EVERY:
        parser.error(f"--warmup and --steps must be multiples of {LOG_EVERY}")
    if args.variant:
        child(args)
        return 0

    shape = TINY if args.tiny else LLAMA_1B
    import torch

    from trainhub.metrics.flops import peak_flops

    device_name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    peak = peak_flops(device_name)
    fpt = flops_per_token(shape)
    results = {"device": device_name, "torch": torch.__version__, "shape": shape, "steps": args.steps,
               "warmup": args.warmup, "flops_per_token": fpt, "peak_flops": peak, "variants": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        world = max([(distributed_of(v) or {"nproc_per_node": 1})["nproc_per_node"] for v in args.variants.split(",")])
        n_tokens = (args.warmup + args.steps + 2) * shape["micro_batch"] * shape["seq"] * world
        make_tokenizer_and_data(work, shape, n_tokens)
        for variant in args.variants.split(","):
            print(f"--- {variant}", flush=True)
            cmd = [sys.executable, __file__, "--variant", variant, "--work", str(work), "--steps", str(args.steps),
                   "--warmup", str(args.warmup)] + (["--tiny"] if args.tiny else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
            if proc.returncode or not lines:
                print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n")
                results["variants"][variant] = {"error": (proc.stderr or proc.stdout)[-1500:]}
                continue
            r = json.loads(lines[-1][len("RESULT "):])
            r["mfu"] = fpt * r["tokens_per_s"] / peak if peak else None
            results["variants"][variant] = r
            print(json.dumps(r), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    print(f"\n{device_name}, torch {torch.__version__}, {fpt / 1e9:.2f} GFLOP/token, "
          f"{args.steps} timed steps after {args.warmup} warm-up\n")
    print("| variant | tokens/s | MFU | peak GB | final loss |")
    print("|---|---:|---:|---:|---:|")
    for name, r in results["variants"].items():
        if "error" in r:
            print(f"| {name} | error | | | |")
            continue
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "n/a"
        mem = f"{r['peak_mem_gb']:.1f}" if r["peak_mem_gb"] is not None else "n/a"
        print(f"| {name} | {r['tokens_per_s']:,.0f} | {mfu} | {mem} | {r['final_loss']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
