"""One shipped job, several backends: the loss curves side by side.

    python research/compare_backends.py [--backends native,trl,llamafactory] [--config config/sft_llamafactory.yaml]

Runs the job file with `train --config JOB --backend B` for each backend — nothing but --backend
changes — moves each run folder to runs/compare_backends/<backend>/, reads the metric logs and writes
research/results/compare_backends.md: the train and eval losses per logged step, the final losses,
and each backend's relative difference from the first. A backend that is not registered here, or whose
environment is missing, is reported as skipped with the reason. Needs the quickstart's model
(runs/quickstart/final; made here if missing) and, for llamafactory, `trainhub env setup llamafactory`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "research" / "results" / "compare_backends.md"


def train(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainhub", "train", *args], cwd=ROOT, capture_output=True, text=True)


def read(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]
    by = {e: [r for r in rows if r["event"] == e] for e in ("start", "train", "eval", "end")}
    return {"train": {r["step"]: r for r in by["train"]}, "eval": {r["step"]: r["eval_loss"] for r in by["eval"]},
            "start": by["start"][-1], "end": by["end"][-1]}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="config/sft_llamafactory.yaml")
    parser.add_argument("--backends", default="native,trl,llamafactory")
    args = parser.parse_args()
    from trainhub.jobfile import load

    job = load(ROOT / args.config)
    if not (ROOT / job.model.path / "config.json").is_file():
        print("making the quickstart's model first (train --config config/quickstart.yaml)", flush=True)
        done = train(["--config", "config/quickstart.yaml", "--set", "log.console=none"])
        assert done.returncode == 0, done.stdout + done.stderr
    results, skipped = {}, {}
    for backend in args.backends.split(","):
        run_dir, dest = Path(job.output_dir), ROOT / "runs" / "compare_backends" / backend
        shutil.rmtree(run_dir, ignore_errors=True)
        t0 = time.time()
        done = train(["--config", args.config, "--backend", backend])
        wall = time.time() - t0
        if not (run_dir / "metrics.jsonl").exists():
            skipped[backend] = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1]
            print(f"{backend}: skipped: {skipped[backend]}", flush=True)
            continue
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(run_dir), dest)
        results[backend] = {**read(dest), "wall_s": wall, "code": done.returncode}
        print(f"{backend}: exit {done.returncode}, final loss {results[backend]['end']['final_loss']}, "
              f"{wall:.0f} s", flush=True)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(report(args.config, results, skipped))
    print(f"wrote {OUT}")
    return 0 if results and all(r["code"] == 0 for r in results.values()) else 1


def report(config: str, results: dict, skipped: dict) -> str:
    names = list(results)
    lines = [f"# One job, {len(names)} backends: `{config}`", "",
             f"Made by `python research/compare_backends.py` ({time.strftime('%Y-%m-%d', time.gmtime())}, "
             f"CPU). Each run: `train --config {config} --backend B`; nothing else changes.", ""]
    for name, why in skipped.items():
        lines.append(f"- `{name}`: not run: {why}")
    if skipped:
        lines.append("")
    steps = sorted({s for r in results.values() for s in r["train"]})
    lines += ["## Train loss per logged step", "", "| step | " + " | ".join(names) + " |",
              "| ---: | " + " | ".join("---:" for _ in names) + " |"]
    for s in steps:
        cells = [f"{results[n]['train'][s]['loss']:.4f}" if s in results[n]["train"] else "" for n in names]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += ["", "## Learning rate per logged step", "", "| step | " + " | ".join(names) + " |",
              "| ---: | " + " | ".join("---:" for _ in names) + " |"]
    for s in steps:
        cells = [f"{results[n]['train'][s]['lr']:.3e}" if s in results[n]["train"] else "" for n in names]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    evals = sorted({s for r in results.values() for s in r["eval"]})
    if evals:
        lines += ["", "## Eval loss", "", "| step | " + " | ".join(names) + " |",
                  "| ---: | " + " | ".join("---:" for _ in names) + " |"]
        for s in evals:
            lines.append(f"| {s} | " + " | ".join(f"{results[n]['eval'].get(s, float('nan')):.4f}" for n in names)
                         + " |")
    ref = names[0] if names else None
    lines += ["", "## Final", "", "| backend | final loss | vs " + str(ref) + " | last eval loss | tokens | "
              "trainable params | wall s |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for n in names:
        r = results[n]
        final, base = r["end"]["final_loss"], results[ref]["end"]["final_loss"]
        last_eval = r["eval"][max(r["eval"])] if r["eval"] else float("nan")
        lines.append(f"| {n} | {final:.4f} | {100 * (final - base) / base:+.1f}% | {last_eval:.4f} | "
                     f"{r['end']['tokens']:,} | {r['start']['params_trainable']:,} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
