#!/usr/bin/env python3
"""Benchmark: a GPT-2 124M-shaped pretraining run through trainhub's nanogpt backend on one GPU.

`train --config <job>` (hub -> driver -> the checkout's train.py, unmodified) with nanoGPT's GPT-2
small: 12 layers, 12 heads, n_embd 768, block 1024, no biases, dropout 0, vocabulary padded to
50,304 (as nanoGPT pads GPT-2's 50,257), bf16 autocast, torch.compile on, fused AdamW, micro-batch
12 x 1024, 8 micro-batches per step per GPU (98,304 tokens per step on one), a train row every step.
MFU is per GPU (over peak x GPUs).

Data: the shipped stories (config/data/stories.jsonl) repeated, each copy shuffled, until the token
stream holds --tokens tokens (default 4M), with a tokenizer trained on the stories. nanoGPT samples
random windows, so repetition does not change the work per token; the vocabulary rows beyond the
tokenizer's ~1.2k tokens are never targets, which does not change the matmul sizes either.

Reported, over the steps after --warmup (compilation, the first evaluation and the row after each
evaluation are left out):
  - tokens/s and MFU as trainhub recomputes them from nanoGPT's printed iteration times
    (6N + 12*L*H*Q*T FLOPs per token over the detected GPU's dense bf16 peak);
  - tokens/s from the rows' wall-clock timestamps (an independent check of nanoGPT's timer);
  - nanoGPT's own MFU (a running mean, relative to an A100's 312 TFLOP/s) and the same rescaled to
    the detected peak.
JSON goes to $OUT/bench_nanogpt.json (or --out), with the run's metrics.jsonl, nanogpt.log and config.

    NANOGPT_DIR=/path/to/nanoGPT PYTHONPATH=backend python3 research/bench_nanogpt.py
    NANOGPT_DIR=... PYTHONPATH=backend python3 research/bench_nanogpt.py --tiny   # CPU smoke test of the script
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORIES = ROOT / "config" / "data" / "stories.jsonl"
GPT2_124M = dict(n_layer=12, n_head=12, n_embd=768, block=1024, vocab=50304, micro_batch=12, grad_accum=8)
TINY = dict(n_layer=2, n_head=2, n_embd=64, block=64, vocab=1024, micro_batch=4, grad_accum=2)
A100_PEAK = 312e12  # what nanoGPT divides by (model.py estimate_mfu)


def corpus(folder: Path, tokens: int) -> Path:
    """The stories, each copy shuffled, repeated to about `tokens` tokens (4 characters a token, roughly)."""
    docs = [json.loads(line)["text"] for line in STORIES.read_text().splitlines() if line.strip()]
    chars_per_copy = sum(len(d) for d in docs)
    copies = max(2, -(-tokens * 4 // chars_per_copy))
    rng = random.Random(0)
    path = folder / "stories_repeated.jsonl"
    with open(path, "w") as f:
        for _ in range(copies):
            rng.shuffle(docs)
            for d in docs:
                f.write(json.dumps({"text": d}) + "\n")
    return path


def job(shape: dict, steps: int, repo: str, train_file: Path, run: Path, processes: int | None) -> dict:
    return {
        "name": "bench-nanogpt", "output_dir": str(run), "seed": 0,
        "backend": {"type": "nanogpt", "repo": repo, "compile": True, "processes": processes},
        "model": {"init": {"family": "gpt2", "n_layer": shape["n_layer"], "n_head": shape["n_head"],
                           "n_embd": shape["n_embd"], "block_size": shape["block"], "dropout": 0.0, "bias": False,
                           "vocab_size": shape["vocab"], "tokenizer": {"type": "train", "vocab_size": 1024}}},
        "method": "pretrain",
        "data": {"train": str(train_file), "eval": str(ROOT / "config" / "data" / "stories_eval.jsonl"),
                 "format": "text", "max_length": shape["block"]},
        "optim": {"type": "adamw", "lr": 6e-4, "betas": [0.9, 0.95], "weight_decay": 0.1}, "schedule": {"warmup_steps": min(10, steps // 2), "decay": "cosine", "min_lr_ratio": 0.1},
        "train": {"micro_batch_size": shape["micro_batch"], "grad_accum": shape["grad_accum"], "max_steps": steps,
                  "precision": "auto", "eval_batches": 2, "log_every": 1, "keep_last": 1, "on_nonfinite": "stop"},
        "log": {"console": "plain"},
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=15, help="steps left out of the averages")
    ap.add_argument("--tokens", type=int, default=4_000_000)
    ap.add_argument("--processes", type=int, default=None,
                    help="GPUs (torchrun); default: every visible GPU. grad_accum stays 8 per GPU")
    ap.add_argument("--tiny", action="store_true", help="a tiny model, for a CPU check of the script")
    ap.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None)
    args = ap.parse_args()
    repo = os.environ.get("NANOGPT_DIR") or str(ROOT / ".nanogpt")
    if not (Path(repo) / "train.py").is_file():
        print(f"no nanoGPT checkout at {repo}: set NANOGPT_DIR (or put one in .nanogpt/)", file=sys.stderr)
        return 2
    shape = TINY if args.tiny else GPT2_124M
    steps, warmup = (8, 3) if args.tiny else (args.steps, args.warmup)
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = tmp / "run"
        train_file = corpus(tmp, 50_000 if args.tiny else args.tokens)
        (tmp / "job.yaml").write_text(yaml.safe_dump(job(shape, steps, repo, train_file, run, args.processes)))
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join([str(ROOT / "backend"), os.environ.get("PYTHONPATH", "")]),
               "TRAINHUB_HOME": str(tmp / "home")}
        done = subprocess.run([sys.executable, "-m", "trainhub", "train", "--config", str(tmp / "job.yaml")],
                              cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        print(done.stdout[-6000:])
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            for name in ("metrics.jsonl", "nanogpt.log", "nanogpt_config.py"):
                if (run / name).is_file():
                    shutil.copy(run / name, args.out / f"bench_nanogpt.{name}")
        if done.returncode != 0:
            print(f"train exited with {done.returncode}", file=sys.stderr)
            return done.returncode
        result = summarise(run, shape, warmup)
    print(json.dumps(result, indent=2))
    if args.out:
        (args.out / "bench_nanogpt.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n| device | tokens/s (nanoGPT timer) | tokens/s (wall) | MFU trainhub | nanoGPT MFU (A100-rel) | "
          f"nanoGPT MFU rescaled |\n| {result['device']} | {result['tokens_per_s']:,.0f} | "
          f"{result['tokens_per_s_wall']:,.0f} | {_pct(result['mfu'])} | {_pct(result['nanogpt_mfu_a100'])} | "
          f"{_pct(result['nanogpt_mfu_rescaled'])} |")
    return 0


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def summarise(run: Path, shape: dict, warmup: int) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    start = next(r for r in rows if r["event"] == "start")
    after_eval = {r["step"] + 1 for r in rows if r["event"] == "eval"}
    train = [r for r in rows if r["event"] == "train" and r["step"] > warmup and r["step"] not in after_eval]
    tps = statistics.median(r["tokens_per_s"] for r in train)
    mfus = [r["mfu"] for r in train if r["mfu"] is not None]
    span = train[-1]["time"] - train[0]["time"]
    wall = (train[-1]["tokens"] - train[0]["tokens"]) / span if span > 0 else None
    own = [float(m) for m in re.findall(r"^iter \d+: .* mfu ([\d.]+)%$", (run / "nanogpt.log").read_text(), re.M)]
    peak = start["hardware"]["peak_flops"]
    last_own = own[-1] / 100 if own else None
    return {
        "device": start["hardware"]["device_name"], "gpus": start["hardware"]["device_count"],
        "torch": start["hardware"]["torch"], "shape": shape,
        "params": start["params_total"], "flops_per_token": start["flops_per_token"],
        "tokens_per_step": start["tokens_per_step"], "precision": start["precision"], "steps_timed": len(train),
        "tokens_per_s": tps, "tokens_per_s_wall": wall, "ms_per_step": 1000 * start["tokens_per_step"] / tps,
        "mfu": statistics.median(mfus) if mfus else None, "peak_flops": peak,
        "nanogpt_mfu_a100": last_own,
        "nanogpt_mfu_rescaled": last_own * A100_PEAK / peak if last_own is not None and peak else None,
        "final_loss": next(r for r in reversed(rows) if r["event"] == "end")["final_loss"],
        "notes": start["notes"],
    }


if __name__ == "__main__":
    sys.exit(main())
