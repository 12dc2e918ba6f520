#!/usr/bin/env python3
"""Issue 23's numerics check: the loss curve of a 200-step run with every kernel on (backend.kernels triton: RMSNorm,
RoPE, SwiGLU, fused linear + cross-entropy) against the eager path, same seed, same batches, compiled, bf16.

"Within bf16 noise" is measured, not assumed: a third run takes another exact path with kernels off (train.loss
eager instead of chunked: the same arithmetic summed in another order), and its drift from the reference is the
noise floor of this setup. Pass: the kernels run's largest windowed drift (trainhub.metrics.drift, 20-step
windows) is within max(2 x the noise run's, 0.2%), and its final eval loss within 0.5%.

The run is research/pretrain_125m.py's (~125M Llama from nothing, 32 x 512 tokens a step, AdamW 3e-3) on
research/data/python-docs when it is there (research/get_corpus.py), else the shipped stories.
    PYTHONPATH=backend:research python research/bench_kernels_curve.py --out $OUT/kernels_curve.json   # a GPU
    TRITON_INTERPRET=1 PYTHONPATH=backend:research python research/bench_kernels_curve.py --tiny     # CPU check
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pretrain_125m import (
    ADAMW,
    BUDGET,
    STORIES,
    STORIES_EVAL,
    default_corpus,
    plot_losses,
    pretrain_job,
    run_jobs,
)

RUNS = {"eager": {"kernels": "none", "loss": "chunked"}, "noise": {"kernels": "none", "loss": "eager"},
        "kernels": {"kernels": "triton", "loss": "auto"}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None, help="JSON results; logs and the plot beside it")
    parser.add_argument("--tiny", action="store_true", help="a 30k-parameter model on CPU (Triton interpreter)")
    args = parser.parse_args()
    train, eval_ = (STORIES, STORIES_EVAL) if args.tiny else default_corpus()
    if args.tiny:
        args.steps, args.window = min(args.steps, 6), 2  # the Triton interpreter runs ~20 tokens/s

    from trainhub.metrics.drift import loss_drift

    def make_job(name: str, run_dir: Path) -> dict:
        job = pretrain_job(f"kernels-curve-{name}", run_dir, tiny=args.tiny, train=train, eval_=eval_,
                           steps=args.steps, seq=32 if args.tiny else BUDGET["seq"],
                           micro_batch=4 if args.tiny else BUDGET["micro_batch"], evals=2 if args.tiny else 4,
                           vocab=BUDGET["vocab"], optim=ADAMW)
        job["backend"]["kernels"] = RUNS[name]["kernels"]
        job["train"]["loss"] = RUNS[name]["loss"]
        if args.tiny:
            job["train"]["eval_batches"] = 2
        return job

    logs, errors = run_jobs(list(RUNS), make_job, args.out)
    if errors:  # the comparison needs all three runs
        raise SystemExit("\n".join(f"{name}: {message}" for name, message in errors.items()))
    drift = {name: loss_drift(logs["eager"], logs[name], window=args.window) for name in ("noise", "kernels")}
    bar = max(2 * drift["noise"].max_abs_rel, 0.002)
    k = drift["kernels"]
    passed = k.max_abs_rel <= bar and k.final_eval_rel is not None and abs(k.final_eval_rel) <= 0.005
    results = {"steps": args.steps, "window": args.window, "train": str(train), "bar_max_abs_rel": bar,
               "passed": passed, **{name: {"max_abs_rel": d.max_abs_rel, "final_rel": d.final_rel,
                                           "final_eval_rel": d.final_eval_rel, "curve": d.rel}
                                    for name, d in drift.items()}}
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
        plot_losses(logs, args.out.with_suffix(".png"), "kernels on against the eager path")
    print(f"\n{args.steps} steps on {train}, {args.window}-step windows against the eager run (chunked loss)\n")
    print("| run | largest windowed drift | last window | final eval rel |")
    print("|---|---:|---:|---:|")
    for name, d in drift.items():
        ev = "n/a" if d.final_eval_rel is None else f"{d.final_eval_rel:+.3%}"
        print(f"| {name} ({RUNS[name]['kernels']}, loss {RUNS[name]['loss']}) | {d.max_abs_rel:.3%} | "
              f"{d.final_rel:+.3%} | {ev} |")
    print(f"\nbar: largest drift <= {bar:.3%} (2 x the noise run's, at least 0.2%), final eval within 0.5%: "
          f"{'PASS' if passed else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
