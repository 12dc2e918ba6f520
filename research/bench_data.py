#!/usr/bin/env python3
"""Benchmark: tokenization + loss masks + packing throughput of trainhub's data path, cold and cached.

Generates a 100k-conversation chat set (arithmetic and day-of-week questions, 1-3 exchanges, 30%
with a system prompt), trains trainhub's byte-level BPE (vocab 4096, ChatML) on the shipped chat
data, then times `trainhub.data.dataset.build_datasets` for an SFT job over it:

  cold    read + validate + render the chat template + locate assistant spans + tokenize (once
          with each worker count of --workers, then on all cores), then
          write the cache
  cached  the same call again: the cache hit
  pack    First-Fit-Decreasing packing of the examples into rows of max_length

    PYTHONPATH=backend python research/bench_data.py [--n 100000] [--workers 1,4] [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def conversation(rng: random.Random) -> dict:
    messages = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": "You are a helpful assistant. Answer briefly."})
    for _ in range(rng.choice((1, 1, 2, 3))):
        if rng.random() < 0.5:
            a, b = rng.randint(0, 999), rng.randint(0, 999)
            messages += [{"role": "user", "content": f"What is {a} plus {b}?"},
                         {"role": "assistant", "content": f"{a} plus {b} is {a + b}."}]
        else:
            d = rng.randrange(7)
            messages += [{"role": "user", "content": f"Which day comes after {DAYS[d]}?"},
                         {"role": "assistant", "content": f"The day after {DAYS[d]} is {DAYS[(d + 1) % 7]}."}]
    return {"messages": messages}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--out", default=None)
    parser.add_argument("--workers", default="1", help="worker counts to time cold, besides all cores: 1,4")
    args = parser.parse_args()

    import torch

    from trainhub.data.dataset import build_datasets
    from trainhub.data.packing import pack_ffd, packing_stats
    from trainhub.data.sources import read_conversations
    from trainhub.data.tokenizer import train_bpe
    from trainhub.job import Job

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["TRAINHUB_HOME"] = str(tmp / "home")
        rng = random.Random(0)
        data = tmp / "chat100k.jsonl"
        with open(data, "w") as f:
            for _ in range(args.n):
                f.write(json.dumps(conversation(rng)) + "\n")
        texts = [m["content"] for _w, msgs in read_conversations([str(ROOT / "config/data/chat.jsonl")])
                 for m in msgs]
        tok = train_bpe(texts, vocab_size=4096, min_frequency=2)
        job = Job.model_validate({
            "name": "bench-data", "model": {"path": str(tmp)}, "method": "sft",
            "data": {"train": str(data), "format": "messages", "max_length": args.max_length},
            "train": {"max_steps": 1}})
        from trainhub.data.parallel import workers

        results = {"n": args.n, "max_length": args.max_length, "cpu_count": os.cpu_count(), "workers": workers()}
        os.environ["TRAINHUB_NO_CACHE"] = "1"
        counts = [int(w) for w in args.workers.split(",") if w and int(w) != workers()]
        single = None
        for w in counts:
            os.environ["TRAINHUB_DATA_WORKERS"] = str(w)
            t0 = time.perf_counter()
            single = build_datasets(job, tok)
            results[f"cold_{w}_workers_s"] = time.perf_counter() - t0
        os.environ.pop("TRAINHUB_DATA_WORKERS", None)
        del os.environ["TRAINHUB_NO_CACHE"]
        t0 = time.perf_counter()
        cold = build_datasets(job, tok)
        results["cold_s"] = time.perf_counter() - t0
        assert cold.cache == "miss", cold.cache
        t0 = time.perf_counter()
        warm = build_datasets(job, tok)
        results["cached_s"] = time.perf_counter() - t0
        assert warm.cache == "hit", warm.cache
        if single is not None:  # the pool changes nothing but the time
            assert all(torch.equal(a, b) for a, b in zip(single.train.input_ids, cold.train.input_ids, strict=True))
            assert all(torch.equal(a, b) for a, b in zip(single.train.labels, cold.train.labels, strict=True))
        lengths = [len(x) for x in cold.train.input_ids]
        t0 = time.perf_counter()
        rows = pack_ffd(lengths, args.max_length)
        results["pack_s"] = time.perf_counter() - t0
        results["tokens"] = sum(lengths)
        results["examples"] = len(lengths)
        results["packing"] = packing_stats(lengths, rows, args.max_length)
        assert all(a.tolist() == b.tolist() for a, b in zip(cold.train.input_ids[:100], warm.train.input_ids[:100],
                                                          strict=True))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    n, tokens = results["examples"], results["tokens"]
    print(f"\n{n:,} conversations, {tokens:,} tokens, {results['cpu_count']} CPU cores\n")
    names = {k[:-2]: f"cold, {k.split('_')[1]} workers" for k in results if k.startswith("cold_") and k != "cold_s"}
    names.update({"cold": f"cold, {results['workers']} workers (all cores)", "cached": "cached", "pack": "pack (FFD)"})
    print("| stage | seconds | examples/s | tokens/s |")
    print("|---|---:|---:|---:|")
    for stage, name in names.items():
        s = results[f"{stage}_s"]
        print(f"| {name} | {s:.2f} | {n / s:,.0f} | {tokens / s:,.0f} |")
    print(f"\npacking: {results['packing']['rows']:,} rows of {args.max_length}, fill {results['packing']['fill']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
