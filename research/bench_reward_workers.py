#!/usr/bin/env python3
"""method.reward_workers on a slow reward: one GRPO step's scoring (--completions completions) in the training
process against N worker processes (rewards/pool.py), on this machine's CPU cores.

The reward stands for one that checks each completion by running something: it does --ms milliseconds' worth of pure
Python per completion (a fixed loop, calibrated on one core first; no sleep, so workers gain only with cores of
their own). Median of --repeats calls
after one warm-up call (the first call starts the workers); the values are checked equal to the in-process ones.

    PYTHONPATH=backend python research/bench_reward_workers.py [--completions 64] [--ms 20] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REWARD = '''
def slow(prompts, completions, **kwargs):
    out = []
    for c in completions:
        n = 0
        for i in range({iterations}):  # a fixed amount of work, ~{ms} ms on one free core
            n += i & 7
        out.append(float(len(c[0]["content"])))
    return out
'''


def iterations_per_ms() -> float:
    """How many of the reward's loop iterations one core runs in a millisecond here."""
    t0, n = time.perf_counter(), 0
    for i in range(2_000_000):
        n += i & 7
    return 2_000_000 / ((time.perf_counter() - t0) * 1000)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--completions", type=int, default=64)
    ap.add_argument("--ms", type=float, default=20.0)
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    from trainhub.rewards.load import load
    from trainhub.rewards.pool import RewardPool

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slow_reward.py"
        path.write_text(REWARD.format(ms=a.ms, iterations=int(a.ms * iterations_per_ms())))
        spec = f"{path}:slow"
        call = {"prompts": [[{"role": "user", "content": "q"}]] * a.completions,
                "completions": [[{"role": "assistant", "content": "x" * i}] for i in range(a.completions)],
                "completion_ids": [[]] * a.completions, "trainer_state": None}
        fn = load(spec)
        want = fn(**call)

        def timed(f) -> float:
            times = []
            for _ in range(a.repeats):
                t0 = time.perf_counter()
                assert f(**call) == want
                times.append(time.perf_counter() - t0)
            return statistics.median(times)

        rows = [("in process", timed(fn))]
        for n in map(int, a.workers.split(",")):
            pool = RewardPool([spec], n)
            try:
                pool(0, **call)  # warm-up: starts the workers
                rows.append((f"{n} worker{'s' if n > 1 else ''}", timed(pool.wrap(0, "slow"))))
            finally:
                pool.close()
    base = rows[0][1]
    print(f"\n{a.completions} completions x {a.ms:g} ms of Python each, {os.cpu_count()} CPU cores, median of {a.repeats}")
    print("| scoring | s per step | speed-up |\n|---|---:|---:|")
    for name, s in rows:
        print(f"| {name} | {s:.3f} | {base / s:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
