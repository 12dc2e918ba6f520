#!/usr/bin/env python3
"""Optimizer quality (issue 24, part b): the same ~125M pretraining run (research/pretrain_125m.py) for a fixed
token budget under each optimizer trainhub builds, each from its shipped preset (config/presets/optim-*.yaml, the
learning rates a user would start from), through `train --backend native`, and compared on the validation loss.

Corpus: real English text, built by research/get_corpus.py (the Python 3.11 documentation from Debian's
python3.11-doc, PSF license; ~1.3 M words, source and sha256 in its SOURCE.md): run it where the package
registry is reachable and carry research/data/ to the GPU machine. --train/--eval take any other text JSON-lines.

Budget: --steps optimizer steps of --micro-batch x --seq tokens (default 300 x 32 x 512 = 4.9 M tokens, about
two passes over that corpus), evaluation --evals times. Per optimizer: final validation loss; the step at which
its validation loss first reaches AdamW's final one (linear between evaluations; "never" if it does not), as a
fraction of AdamW's steps; mean seconds per step (from the rows' tokens/s after the first tenth) relative to
AdamW's. The issue's bar: Muon reaches AdamW's final validation loss in <= 0.7x AdamW's steps at <= 1.05x its
time per step. All curves go to one plot (<out stem>.png) and the logs beside --out.
    python research/get_corpus.py                                  # once, here
    PYTHONPATH=backend:research python research/bench_optim_quality.py --out $OUT/optim_quality.json  # GPU
    PYTHONPATH=backend:research python research/bench_optim_quality.py --tiny --optimizers adamw,muon  # CPU check
    ... --optimizers adamw,adamw@1e-2,lion@3e-4,lion@3e-3        # NAME@LR: the preset at another rate (a sweep)
    ... --merge a.json b.json --out all.json                      # runs of several calls: one table and plot
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from pretrain_125m import (
    BUDGET,
    CORPUS,
    STORIES,
    STORIES_EVAL,
    first_then,
    plot_losses,
    pretrain_job,
    run_jobs,
)

OPTIMIZERS = ("adamw", "muon", "lion", "came", "prodigy", "schedule-free-adamw", "adamw8bit", "sophia")


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def steps_to_reach(evals: list[tuple[int, float]], target: float) -> float | None:
    """The first step at which the eval curve reaches target, linear between evaluations; None if it never does."""
    prev = None
    for step, loss in evals:
        if loss <= target:
            if prev is None or prev[1] == loss:
                return float(step)
            (s0, l0) = prev
            return s0 + (l0 - target) / (l0 - loss) * (step - s0)
        prev = (step, loss)
    return None


def summarize(rows: list) -> dict:
    train = [r for r in rows if r.event == "train"]
    evals = [(r.step, r.eval_loss) for r in rows if r.event == "eval" and r.eval_loss is not None]
    start = next(r for r in rows if r.event == "start")
    timed = train[max(1, len(train) // 10):]
    per_step = [start.tokens_per_step / r.tokens_per_s for r in timed if r.tokens_per_s]
    return {"evals": evals, "final_eval_loss": evals[-1][1] if evals else None, "final_loss": train[-1].loss,
            "s_per_step": statistics.mean(per_step) if per_step else None}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                        help="adamw first; presets optim-NAME; NAME@LR overrides the preset's rate")
    parser.add_argument("--steps", type=int, default=BUDGET["steps"])
    parser.add_argument("--seq", type=int, default=BUDGET["seq"])
    parser.add_argument("--micro-batch", type=int, default=BUDGET["micro_batch"])
    parser.add_argument("--evals", type=int, default=BUDGET["evals"], help="evaluations over the run")
    parser.add_argument("--train", type=Path, default=CORPUS / "train.jsonl")
    parser.add_argument("--eval", type=Path, default=CORPUS / "eval.jsonl")
    parser.add_argument("--out", type=Path, default=None, help="JSON results; logs and the plot beside it")
    parser.add_argument("--tiny", action="store_true", help="a 30k-parameter model on the shipped stories, CPU")
    parser.add_argument("--merge", type=Path, nargs="+", default=None,
                        help="results JSON of earlier runs (each with its own AdamW): one table and one eval-curve "
                             "plot of all of them, written to --out; nothing is trained")
    args = parser.parse_args()
    if args.merge:
        if not args.out:
            parser.error("--merge writes its table and plot to --out")
        return merge(args.merge, args.out)
    names = args.optimizers.split(",")  # NAME or NAME@LR (a learning-rate sweep: lion@3e-4,lion@1e-4)
    first_then(parser, "--optimizers", ",".join(n.split("@")[0] for n in names), OPTIMIZERS)
    for n in names:
        if "@" in n and not _is_float(n.split("@", 1)[1]):
            parser.error(f"--optimizers: {n!r}: NAME@LR takes a number after @ (lion@3e-4)")
    if args.tiny:
        args.steps, args.seq, args.micro_batch, args.evals = min(args.steps, 20), 32, 8, 4
        args.train, args.eval = STORIES, STORIES_EVAL
    for path in (args.train, args.eval):
        if not path.is_file():
            parser.error(f"{path}: no such corpus file; build it with `python research/get_corpus.py`")

    def make_job(name: str, run_dir: Path) -> dict:
        base, _, lr = name.partition("@")
        return pretrain_job(f"optim-quality-{base}", run_dir, tiny=args.tiny, train=args.train, eval_=args.eval,
                            steps=args.steps, seq=args.seq, micro_batch=args.micro_batch, evals=args.evals,
                            vocab=BUDGET["vocab"], extends=[f"optim-{base}"],
                            optim={"lr": float(lr)} if lr else None)  # refines the preset's optim section

    logs, errors = run_jobs(names, make_job, args.out)
    results: dict = {"steps": args.steps, "tokens_per_step": args.micro_batch * args.seq, "train": str(args.train),
                     "optimizers": {name: {"error": errors[name]} if name in errors else summarize(logs[name])
                                    for name in names}}
    base = results["optimizers"].get("adamw", {})
    target, base_steps, base_s = base.get("final_eval_loss"), args.steps, base.get("s_per_step")
    for r in results["optimizers"].values():
        if "error" in r or target is None:
            continue
        reach = steps_to_reach(r["evals"], target)
        r["steps_to_adamw_final"] = reach
        r["steps_ratio"] = reach / base_steps if reach is not None else None
        r["time_ratio"] = r["s_per_step"] / base_s if r["s_per_step"] and base_s else None
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
        plot_losses(logs, args.out.with_suffix(".png"), f"{args.steps} steps x {args.micro_batch * args.seq:,} tokens")

    print(f"\n{args.steps} steps x {args.micro_batch * args.seq:,} tokens on {args.train}; "
          f"AdamW's final eval loss {target if target is None else round(target, 4)}\n")
    print_table({name: results["optimizers"][name] for name in names})
    return 0


def print_table(runs: dict[str, dict]) -> None:
    print("| optimizer | final eval loss | steps to AdamW's final | x AdamW's steps | s/step | x AdamW's s/step |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in runs.items():
        if "error" in r:
            print(f"| {name} | error | | | | |")
            continue
        fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
        reach = r.get("steps_to_adamw_final")
        print(f"| {name} | {fmt(r['final_eval_loss'], '.4f')} | {'never' if reach is None else f'{reach:.0f}'} | "
              f"{fmt(r.get('steps_ratio'), '.2f')} | {fmt(r['s_per_step'], '.3f')} | {fmt(r.get('time_ratio'), '.2f')} |")


def merge(paths: list[Path], out: Path) -> int:
    """Runs made in separate calls, side by side: each optimizer keeps the ratios against its own run's AdamW
    (the fair comparison); every run's AdamW is kept too, labelled with its run, so the table shows how far
    two AdamW runs of the same seed land apart (the noise the other rows are read against)."""
    merged: dict[str, dict] = {}
    for k, path in enumerate(paths, 1):
        run = json.loads(path.read_text())
        for name, r in run["optimizers"].items():
            label = name if name not in merged else f"{name} (run {k})"
            merged[label] = {**r, "run": str(path)}
    out.write_text(json.dumps({"merged_from": [str(p) for p in paths], "optimizers": merged}, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", flush=True)
    else:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        for label, r in merged.items():
            if r.get("evals"):
                ax.plot(*zip(*r["evals"], strict=True), "o-" if "run" not in label else "o--", ms=3, label=label)
        firsts = sorted(r["evals"][0][1] for r in merged.values() if r.get("evals"))
        if firsts:  # a run that diverged early would flatten the others' curves
            ax.set_ylim(top=firsts[len(firsts) // 2] * 1.25)
        ax.set_xlabel("step")
        ax.set_ylabel("validation loss")
        ax.set_title(f"~125M, {len(paths)} runs merged: validation loss")
        ax.legend(fontsize=7, ncol=2)
        fig.savefig(out.with_suffix(".png"), dpi=120, bbox_inches="tight")
    print_table(merged)
    return 0


if __name__ == "__main__":
    sys.exit(main())
