"""Reading back what the sinks wrote, each through its own project's reader."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def wandb_records(run_file: Path) -> list[dict]:
    """Every record of a .wandb file, through wandb's own reader (`wandb leet inspect --json`, wandb>=0.31)."""
    done = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(run_file)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def wandb_runs(run_dir: Path) -> list[dict]:
    """Each offline W&B run folder of a run folder, oldest first: its run id, history rows and summary."""
    out = []
    for run_file in sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb")):
        records = wandb_records(run_file)
        run = next(r["run"] for r in records if r["type"] == "run")
        summary: dict = {}
        for r in records:
            if r["type"] == "summary":
                summary.update(r["summary"].get("update", {}))
        history = [r["history"]["item"] for r in records if r["type"] == "history"]
        out.append({"id": run["run_id"], "run": run, "history": history, "summary": summary})
    return out


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] as TensorBoard shows them (its EventAccumulator, purges applied)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(run_dir) / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
