#!/usr/bin/env python3
"""A whole GRPO (dapo) step, native against TRL, from one job file: `train --backend native` (eager and with
backend.compile) and `train --backend trl`, one after the other in this run, on the same saved model, prompts,
seed and settings as research/bench_grpo_trl.py (Qwen2.5-0.5B shape, random init, bf16; 8 prompts x 8
generations x 256 new tokens per optimizer step, 16 completions per micro-batch x 4 accumulation).

Per side: seconds per step (median of the gaps between consecutive train rows after --warmup steps),
completion tokens/s over the whole step, peak memory (the rows' mem_gb), and for native the per-phase split
its rows carry (rollout_tokens_per_s, rollout_share; the rest of the step is rewards + update).
The issue's targets (26): native rollout >= 24k completion tokens/s, whole step >= 5x TRL's, peak memory <= TRL's.

    PYTHONPATH=backend python research/bench_grpo.py --tiny        # CPU check of the script
    PYTHONPATH=backend python research/bench_grpo.py               # GPU: the real sizes; $OUT/bench_grpo.json
    PYTHONPATH=backend python research/bench_grpo.py --sides native-compiled --memory   # what makes native's peak
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_grpo_trl import ENV, REAL, ROOT, TINY, build_model, job, write_prompts  # noqa: E402

SIDES = {"trl": ("trl", False), "native": ("native", False), "native-compiled": ("native", True)}


def run_side(work: Path, job_dict: dict, backend: str, compiled: bool, env: dict) -> list[dict]:
    import yaml

    spec = dict(job_dict, backend={"type": backend, **({"compile": True} if compiled else {})})
    shutil.rmtree(work / "run", ignore_errors=True)
    (work / "job.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    done = subprocess.run([sys.executable, "-m", "trainhub", "train", "--config", str(work / "job.yaml")],
                          env=env, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{backend}{' compiled' if compiled else ''}: train exited {done.returncode}")
    rows = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["event"] == "train"]


def summarise(rows: list[dict], warmup: int, completions: int) -> dict:
    timed = rows[warmup:]
    gaps = [b["time"] - a["time"] for a, b in zip(timed, timed[1:], strict=False)]
    s = statistics.median(gaps)
    length = statistics.mean(r["method"]["completion_length"] for r in timed[1:])
    out = {"s_per_step": s, "step_times": gaps, "mean_completion_len": length,
           "completion_tokens_per_s": completions * length / s,
           "peak_gb": max((r["mem_gb"] or 0) for r in rows)}
    native = [r["method"] for r in timed[1:] if r["method"].get("rollout_tokens_per_s")]
    if native:
        out["rollout_tokens_per_s"] = statistics.median(m["rollout_tokens_per_s"] for m in native)
        out["rollout_share"] = statistics.median(m["rollout_share"] for m in native)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 5; tiny 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 2; tiny 1)")
    ap.add_argument("--sides", default="native-compiled,native,trl")
    ap.add_argument("--memory", action="store_true",
                    help="native sides: the last step traced with train.profile.memory (CUDA), left out of the timing; "
                         "prints what is alive at its peak")
    a = ap.parse_args()
    import torch

    cuda = torch.cuda.is_available()
    size = TINY if a.tiny else REAL
    timed = a.steps or (2 if a.tiny else 5)
    warmup = a.warmup if a.warmup is not None else (1 if a.tiny else 2)
    total = warmup + timed + 1
    completions = size["prompts"] * size["group"]
    env = {**os.environ, **ENV, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "backend"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        build_model(work / "model", size, cuda)
        write_prompts(work / "prompts.jsonl", size["prompts"] * total)
        job_dict = job(work / "model", work, size, total, cuda)
        job_dict["name"] = "bench-grpo"
        for side in a.sides.split(","):
            backend, compiled = SIDES[side]
            traced = a.memory and backend == "native"  # its last step traced, and left out of the timing
            spec = dict(job_dict, train={**job_dict["train"], "profile": {"start": total, "steps": 1, "memory": True}}) \
                if traced else job_dict
            rows = run_side(work, spec, backend, compiled, env)
            results[side] = summarise(rows[:-1] if traced else rows, warmup, completions)
            profile = work / "run" / "profile" / "summary.json"
            if traced and profile.is_file():
                results[side]["memory"] = json.loads(profile.read_text()).get("memory")
    device = torch.cuda.get_device_name() if cuda else "cpu"
    out = {"device": device, "torch": torch.__version__, "size": size, "warmup_steps": warmup, "timed_steps": timed,
           "completions_per_step": completions, "sides": results}
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "bench_grpo.json").write_text(json.dumps(out, indent=1))
    trl = results.get("trl", {}).get("s_per_step")
    print(f"\nGRPO dapo, {size['prompts']} x {size['group']} x {size['new_tokens']} tokens on {device}, median of "
          f"{timed} steps after {warmup}")
    print(f"{'side':<17}{'s/step':>8}{'compl tok/s':>13}{'rollout tok/s':>15}{'rollout %':>11}{'peak GB':>9}{'vs trl':>8}")
    for side, r in results.items():
        speed = f"{trl / r['s_per_step']:.1f}x" if trl else ""
        roll = f"{r['rollout_tokens_per_s']:,.0f}" if "rollout_tokens_per_s" in r else "-"
        share = f"{100 * r['rollout_share']:.0f}%" if "rollout_share" in r else "-"
        print(f"{side:<17}{r['s_per_step']:>8.2f}{r['completion_tokens_per_s']:>13,.0f}{roll:>15}{share:>11}"
              f"{r['peak_gb']:>9.2f}{speed:>8}")
    for side, r in results.items():
        if r.get("memory"):
            print(f"\n{side}: {r['memory']['peak_gb']:.2f} GB at the traced step's peak; alive then:")
            for b in r["memory"]["at_peak"]:
                print(f"  {b['gb']:7.3f} GB  {b['blocks']:>6} blocks  {b['where']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
