#!/usr/bin/env python3
"""The demonstration's reward curve on both backends: config/grpo_native.yaml run as it is through
`train --backend native` and `train --backend trl` (same job file, seed, prompts, rewards and algorithm), on the
CPU; reward_mean by step side by side, from each run's metrics.jsonl.

    PYTHONPATH=backend python research/grpo_curves.py [--steps 30] [--algorithm grpo] [--set K=V] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def curve(backend: str, steps: int, algorithm: str, work: Path, sets: list[str]) -> dict:
    run = work / backend
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "backend"), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "trainhub", "train", "--config", "config/grpo_native.yaml",
                           "--backend", backend, "--set", f"output_dir={run}", "--set", f"train.max_steps={steps}",
                           "--set", "train.save_every=null", "--set", f"method.algorithm={algorithm}",
                           "--set", "log.console=plain", *(x for kv in sets for x in ("--set", kv))], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{backend}: exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["event"] == "train"]
    end = [r for r in rows if r["event"] == "end"][-1]
    return {"reward_mean": {r["step"]: r["method"]["reward_mean"] for r in train},
            "completion_length": {r["step"]: r["method"]["completion_length"] for r in train}, "wall_s": end["wall_s"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--algorithm", default="grpo")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE, passed to both runs")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {b: curve(b, a.steps, a.algorithm, Path(tmp), a.sets) for b in ("native", "trl")}
    print(f"config/grpo_native.yaml, algorithm {a.algorithm} {' '.join(a.sets)}, CPU: reward_mean by step")
    print(f"{'step':>4} {'native':>8} {'trl':>8}")
    for step in range(1, a.steps + 1):
        print(f"{step:>4} {result['native']['reward_mean'][step]:>8.3f} {result['trl']['reward_mean'][step]:>8.3f}")
    print(f"wall s: native {result['native']['wall_s']:.0f}, trl {result['trl']['wall_s']:.0f}")
    if a.out:
        a.out.write_text(json.dumps({"algorithm": a.algorithm, "steps": a.steps, "set": a.sets, **result}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
