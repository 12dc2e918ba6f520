"""train.profile: a torch.profiler trace of chosen optimizer steps, and how busy the GPU was during them.

The window opens before step `start` and closes after step `start + steps - 1`, with the device synchronized at
both ends so the wall time covers exactly the work of those steps. The GPU's busy time is the union of its
kernels' intervals in the trace (overlapping kernels on several streams count once), so busy / wall is the share
of the window the GPU was doing work: what is left is time lost to the host (launches, Python, data, syncs).
Writes run_dir/profile/trace.json (Chrome trace format: Perfetto, chrome://tracing) and summary.json; rank 0 only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from trainhub.engine.device import synchronize
from trainhub.job import ProfileSection

TOP_OPS = 15


def busy_seconds(intervals: list[tuple[float, float]]) -> float:
    """The length of the union of [start, end) intervals (any units; the same out)."""
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


class StepProfiler:
    """Opened and closed around the loop's steps: `before(step)` ahead of the step about to run (1-based),
    `after(step)` once it is done. A no-op when the job asks for no profile or on ranks other than 0. A window
    this run never reaches (steps first..last: a resume past it, epochs that end before it, a dry run) is said
    in a note, not skipped silently."""

    def __init__(self, spec: ProfileSection | None, run_dir: Path, device: torch.device, main: bool, *,
                 first: int, last: int, notes: list[str]):
        if spec is not None and not first <= spec.start <= last:
            notes.append(f"train.profile: step {spec.start} is outside this run's steps {first}-{last}; "
                         f"nothing is profiled")
            spec = None
        self.spec, self.dir, self.device = spec if main else None, run_dir / "profile", device
        self.prof, self.t0 = None, 0.0

    def before(self, step: int) -> None:
        if self.spec is None or step != self.spec.start:
            return
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        synchronize(self.device)
        self.prof = torch.profiler.profile(activities=activities, record_shapes=False)
        self.prof.__enter__()
        self.t0 = time.perf_counter()

    def after(self, step: int, last: bool = False) -> None:
        """Close the window after its last step, or earlier when the run ends inside it (`last`)."""
        if self.prof is None or (step < self.spec.start + self.spec.steps - 1 and not last):
            return
        synchronize(self.device)
        wall = time.perf_counter() - self.t0
        self.prof.__exit__(None, None, None)
        summary = summarize(self.prof, wall, step - self.spec.start + 1, self.device)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prof.export_chrome_trace(str(self.dir / "trace.json"))
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        share = summary["gpu_busy_share"]
        print(f"profile: steps {self.spec.start}-{step}, {wall:.3f} s" +
              (f", GPU busy {share:.1%}" if share is not None else " (no GPU: CPU ops only)") +
              f"; {self.dir / 'trace.json'}", flush=True)
        self.prof = None


def summarize(prof, wall: float, steps: int, device: torch.device) -> dict:
    events = prof.events()
    kernels = [(e.time_range.start, e.time_range.end) for e in events
               if e.device_type == torch.autograd.DeviceType.CUDA]  # microseconds
    busy = busy_seconds(kernels) / 1e6 if device.type == "cuda" else None
    ops = sorted(prof.key_averages(), key=lambda a: a.self_device_time_total if busy is not None
                 else a.self_cpu_time_total, reverse=True)[:TOP_OPS]
    return {
        "steps": steps, "wall_s": wall, "s_per_step": wall / steps, "gpu_busy_s": busy,
        "gpu_busy_share": busy / wall if busy is not None else None, "kernels": len(kernels),
        "top_ops": [{"name": a.key, "calls": a.count, "self_cpu_ms": a.self_cpu_time_total / 1e3,
                     "self_device_ms": a.self_device_time_total / 1e3} for a in ops],
    }
