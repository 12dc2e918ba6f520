#!/usr/bin/env python3
"""FP8 quality: the same pretraining run in bf16+compile and in each float8 recipe+compile, through the hub and
the native engine, compared step by step with trainhub.metrics.drift (the loss-drift guard).

The run is research/pretrain_125m.py's, the same as the optimizer quality benchmark's (bench_optim_quality.py):
a GPT-2-small-sized Llama from nothing, 300 steps x 32 x 512 tokens, evaluation 10 times, AdamW 3e-3 (the
small-model recipe of config/presets/optim-adamw.yaml). Every Linear is converted (filter: all): at hidden 768
the measured filter would keep nearly all of them in bf16 (fp8 does not pay there), and this run asks about
numerics, not speed.

Corpus: research/data/python-docs (research/get_corpus.py; English text, PSF license) when it is there, as the
issue asks (the optimizer benchmark's corpus and token budget); else the repository's stories (~100k tokens,
many passes: the eval loss rises late, but both runs see the same batches). --train/--eval take others.
Pass/fail: |final eval loss rel. error| <= --tolerance (0.5%).

    PYTHONPATH=backend:research python research/bench_fp8_drift.py --out $OUT/fp8_drift.json     # a GPU of sm89+
    PYTHONPATH=backend:research python research/bench_fp8_drift.py --tiny --variants bf16        # CPU: checks the script

Each run's metrics.jsonl is kept beside --out (<out stem>.<variant>.jsonl), and with matplotlib the loss
curves go to one plot (<out stem>.png). The table is printed last.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pretrain_125m import ADAMW, BUDGET, default_corpus, first_then, plot_losses, pretrain_job, run_jobs

RECIPES = ("tensorwise", "rowwise", "rowwise_with_gw_hp")
VARIANTS = ("bf16", *(f"fp8-{r}" for r in RECIPES))


def job(variant: str, run_dir: Path, args) -> dict:
    precision = "bf16" if variant == "bf16" else {"type": "fp8", "recipe": variant[len("fp8-"):], "filter": "all"}
    return pretrain_job(f"fp8-drift-{variant}", run_dir, tiny=args.tiny, train=args.train, eval_=args.eval,
                        steps=args.steps, seq=32 if args.tiny else BUDGET["seq"],
                        micro_batch=8 if args.tiny else BUDGET["micro_batch"], evals=4 if args.tiny else
                        BUDGET["evals"], vocab=BUDGET["vocab"], precision=precision, optim=ADAMW, seed=args.seed)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)}; bf16 first")
    parser.add_argument("--steps", type=int, default=BUDGET["steps"])
    parser.add_argument("--window", type=int, default=20, help="steps averaged per drift point")
    parser.add_argument("--tolerance", type=float, default=0.005, help="bar on |final eval loss rel. error|")
    parser.add_argument("--seed", type=int, default=0, help="the job's seed (init and batch order), every variant's")
    train, eval_ = default_corpus()
    parser.add_argument("--train", type=Path, default=train)
    parser.add_argument("--eval", type=Path, default=eval_)
    parser.add_argument("--out", type=Path, default=None, help="JSON results; run logs and the plot beside it")
    parser.add_argument("--tiny", action="store_true", help="a 30k-parameter model, eager, on CPU")
    args = parser.parse_args()
    variants = first_then(parser, "--variants", args.variants, VARIANTS)
    if args.tiny:
        args.steps = min(args.steps, 20)
        args.window = min(args.window, 5)

    from trainhub.metrics.drift import loss_drift

    logs, errors = run_jobs(variants, lambda variant, run_dir: job(variant, run_dir, args), args.out)
    results: dict = {"steps": args.steps, "seed": args.seed, "window": args.window, "tolerance": args.tolerance,
                     "train": str(args.train), "variants": {v: {"error": e} for v, e in errors.items()}}
    for variant, rows in logs.items():
        train = [r for r in rows if r.event == "train"]
        evals = [r for r in rows if r.event == "eval"]
        r = {"tokens_per_s": sum(t.tokens_per_s for t in train[5:]) / max(1, len(train[5:])),
             "final_loss": train[-1].loss, "final_eval_loss": evals[-1].eval_loss if evals else None}
        if variant != "bf16" and "bf16" in logs:
            drift = loss_drift(logs["bf16"], rows, window=args.window)
            r.update(drift_final=drift.final_rel, drift_max_abs=drift.max_abs_rel, eval_rel=drift.final_eval_rel,
                     drift_curve=drift.rel, passed=drift.final_eval_rel is not None
                     and abs(drift.final_eval_rel) <= args.tolerance)
        results["variants"][variant] = r
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
        plot_losses(logs, args.out.with_suffix(".png"), "bf16 against fp8 recipes")

    print(f"\n{args.steps} steps, drift window {args.window}, bar |eval rel| <= {args.tolerance:.2%}\n")
    print("| variant | tokens/s | final train loss | final eval loss | drift (last window) | max abs drift "
          "| eval rel | pass |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name in variants:
        r = results["variants"][name]
        if "error" in r:
            print(f"| {name} | error | | | | | | |")
            continue
        ev = f"{r['final_eval_loss']:.4f}" if r["final_eval_loss"] is not None else "n/a"
        if name == "bf16":
            print(f"| {name} | {r['tokens_per_s']:,.0f} | {r['final_loss']:.4f} | {ev} | | | | |")
            continue
        rel = f"{r['eval_rel']:+.3%}" if r.get("eval_rel") is not None else "n/a"
        print(f"| {name} | {r['tokens_per_s']:,.0f} | {r['final_loss']:.4f} | {ev} | {r['drift_final']:+.3%} | "
              f"{r['drift_max_abs']:.3%} | {rel} | {'yes' if r['passed'] else 'NO'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
