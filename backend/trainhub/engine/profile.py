"""train.profile: a torch.profiler trace of chosen optimizer steps, and how busy the GPU was during them.

The window opens before step `start` and closes after step `start + steps - 1`, with the device synchronized at
both ends so the wall time covers exactly the work of those steps. The GPU's busy time is the union of its
kernels' intervals in the trace (overlapping kernels on several streams count once), so busy / wall is the share
of the window the GPU was doing work: what is left is time lost to the host (launches, Python, data, syncs).
That share also counts the window's own lead-in: the device is synchronized at the start, so the GPU waits for
the host to fetch the batch and launch the first kernel, which in steady training the host did a step earlier
while the GPU was busy. `gpu_busy_share_span` divides by the span from the first kernel's start to the last
one's end instead: the gaps inside and between the window's steps count, that lead-in does not. Trace two or
more steps to see a boundary between steps.
Writes run_dir/profile/trace.json (Chrome trace format: Perfetto, chrome://tracing) and summary.json; rank 0 only.

With `memory` (CUDA), the caching allocator also records every allocation and free of the window with the
Python stack that made it (torch.cuda.memory._record_memory_history): profile/memory.pickle for
pytorch.org/memory_viz, and summary.json's `memory`: the window's peak of allocated bytes and what was alive
at that moment, grouped by the first trainhub line of each block's stack (`peak_blocks`, replayed from the
snapshot's event trace). Blocks allocated before the window (weights, optimizer states, caches) have no stack
in the trace; they count as one line, `before the window`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from trainhub.engine.device import synchronize
from trainhub.job import ProfileSection

TOP_OPS = 15
TOP_BLOCKS = 12
BEFORE = "before the window"


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
        if spec is not None and spec.memory and device.type != "cuda":
            notes.append("train.profile.memory: the allocator's history is recorded on CUDA GPUs only; this run "
                         "gets the trace without it")
        self.spec, self.dir, self.device = spec if main else None, run_dir / "profile", device
        self.memory = spec is not None and spec.memory and device.type == "cuda"
        self.prof, self.t0, self.base = None, 0.0, 0

    def before(self, step: int) -> None:
        if self.spec is None or step != self.spec.start:
            return
        activities = [torch.profiler.ProfilerActivity.CPU]
        if self.device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        synchronize(self.device)
        if self.memory:
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            torch.cuda.memory._record_memory_history(stacks="python", max_entries=2_000_000, device=self.device)
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
        if self.memory:
            summary["memory"] = self._memory()
        self.prof.export_chrome_trace(str(self.dir / "trace.json"))
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        share, span_share = summary["gpu_busy_share"], summary["gpu_busy_share_span"]
        busy = " (no GPU: CPU ops only)" if share is None else f", GPU busy {share:.1%}"
        if span_share is not None:
            busy += f" of the window, {span_share:.1%} from its first kernel to its last"
        print(f"profile: steps {self.spec.start}-{step}, {wall:.3f} s{busy}; {self.dir / 'trace.json'}", flush=True)
        if self.memory:
            peak = summary["memory"]
            print(f"profile: peak {peak['peak_gb']:.2f} GB allocated; largest at the peak: " +
                  "; ".join(f"{b['where']} {b['gb']:.2f} GB" for b in peak["at_peak"][:3]), flush=True)
        self.prof = None

    def _memory(self) -> dict:
        import pickle

        snapshot = torch.cuda.memory._snapshot(self.device)
        torch.cuda.memory._record_memory_history(enabled=None, device=self.device)
        with open(self.dir / "memory.pickle", "wb") as f:
            pickle.dump(snapshot, f)
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        out = peak_blocks(snapshot["device_traces"][index], self.base)
        out["max_allocated_gb"] = torch.cuda.max_memory_allocated(self.device) / 1e9
        return out


def _where(frames: list[dict]) -> str:
    """The first frame in trainhub's code (else the first frame), as path-from-the-package:line function."""
    for f in frames:
        name = f.get("filename", "")
        if "/trainhub/" in name and "/engine/profile.py" not in name:
            return f"{name.rsplit('/trainhub/', 1)[1]}:{f.get('line')} {f.get('name')}"
    python = [f for f in frames if f.get("filename", "").endswith(".py")] or frames
    return f"{python[0].get('filename')}:{python[0].get('line')} {python[0].get('name')}" if python else "?"


def _replay(events: list[dict], base: int, stop: int | None = None):
    """Walk the allocs and frees up to event `stop`: (live blocks {addr: (size, where)}, bytes allocated before
    the window still alive, total allocated, the index of the event that reached the highest total, that total)."""
    live: dict[int, tuple[int, str]] = {}
    total = before = peak = base
    peak_at = -1
    for i, e in enumerate(events[:stop]):
        action, addr, size = e.get("action"), e.get("addr"), e.get("size", 0)
        if action == "alloc":
            live[addr] = (size, _where(e.get("frames") or []))
            total += size
        elif action == "free_completed":
            if addr in live:
                total -= live.pop(addr)[0]
            else:  # allocated before the window
                total -= size
                before -= size
        if total > peak:
            peak, peak_at = total, i
    return live, before, total, peak_at, peak


def peak_blocks(events: list[dict], base: int) -> dict:
    """Replay one device's allocator trace (torch.cuda.memory._snapshot()["device_traces"][i]) from `base`
    bytes allocated at its start: the peak of allocated bytes, and the blocks alive at that moment grouped by
    where they were allocated (_where), largest first. A free of a block the window did not allocate comes out
    of the `before the window` line."""
    *_, peak_at, peak = _replay(events, base)
    live, before, *_ = _replay(events, base, stop=peak_at + 1)
    groups: dict[str, list[int]] = {BEFORE: [before, 0]}
    for size, where in live.values():
        g = groups.setdefault(where, [0, 0])
        g[0] += size
        g[1] += 1
    rows = sorted(({"where": w, "gb": b / 1e9, "blocks": n} for w, (b, n) in groups.items()), key=lambda r: -r["gb"])
    return {"base_gb": base / 1e9, "peak_gb": peak / 1e9, "at_peak": rows[:TOP_BLOCKS]}


def summarize(prof, wall: float, steps: int, device: torch.device) -> dict:
    events = prof.events()
    kernels = [(e.time_range.start, e.time_range.end) for e in events
               if e.device_type == torch.autograd.DeviceType.CUDA]  # microseconds
    busy = busy_seconds(kernels) / 1e6 if device.type == "cuda" else None
    span = (max(b for _, b in kernels) - min(a for a, _ in kernels)) / 1e6 if busy is not None and kernels else None
    ops = sorted(prof.key_averages(), key=lambda a: a.self_device_time_total if busy is not None
                 else a.self_cpu_time_total, reverse=True)[:TOP_OPS]
    return {
        "steps": steps, "wall_s": wall, "s_per_step": wall / steps, "gpu_busy_s": busy,
        "gpu_busy_share": busy / wall if busy is not None else None,
        "gpu_span_s": span, "gpu_busy_share_span": busy / span if span else None, "kernels": len(kernels),
        "top_ops": [{"name": a.key, "calls": a.count, "self_cpu_ms": a.self_cpu_time_total / 1e3,
                     "self_device_ms": a.self_device_time_total / 1e3} for a in ops],
    }
