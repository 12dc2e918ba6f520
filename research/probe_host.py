"""How fast is the GPU machine's host, core by core? A host-bound training step (Unsloth's LoRA step
launches ~2,700 kernels) runs as fast as the core its Python thread is on, and earlier runs saw a pure
Python loop take 33 ns per iteration in one process and 65 ns in the next (research/results/unsloth.md,
sixth session). This script separates the causes:

    topology   what the kernel says: CPUs, SMT siblings, NUMA nodes, the GPU's local CPUs, autogroup
    per-core   the main thread pinned to each CPU in turn, a few rounds: Python ns per loop iteration and
               µs per tiny CUDA kernel launch (a core that is slow every round is the core; a core that is
               slow in one round only is the moment)
    sibling    the main thread on CPU 0 while one busy process spins on CPU k, for every k: a k that
               slows CPU 0 shares its physical core (a hyperthread sibling the guest may not be told of)
    processes  fresh unpinned processes, one after another: the spread a benchmark of one run each sees

    python research/probe_host.py --out $OUT/probe_host.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def python_ns(n: int = 400_000) -> float:
    t0 = time.perf_counter()
    total = 0
    for i in range(n):
        total += i
    return 1e9 * (time.perf_counter() - t0) / n


def launch_us(n: int = 4_000) -> float:
    import torch

    x = torch.zeros(16, device="cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        x.add_(1)
    torch.cuda.synchronize()
    return 1e6 * (time.perf_counter() - t0) / n


def read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError as err:
        return f"({err.strerror})"


def topology() -> dict:
    cpus = sorted(os.sched_getaffinity(0))
    out = {"cpus": len(cpus), "autogroup": read("/proc/sys/kernel/sched_autogroup_enabled"),
           "siblings": {c: read(f"/sys/devices/system/cpu/cpu{c}/topology/thread_siblings_list") for c in cpus},
           "nodes": read("/sys/devices/system/node/online"),
           "governor": read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
           "loadavg": read("/proc/loadavg")}
    for cmd in (["lscpu"], ["nvidia-smi", "topo", "-m"]):
        try:
            out[cmd[0]] = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired) as err:
            out[cmd[0]] = str(err)
    return out


def per_core(rounds: int) -> dict:
    cpus = sorted(os.sched_getaffinity(0))
    launch_us(500)  # the CUDA context, once
    table = {c: {"python_ns": [], "launch_us": []} for c in cpus}
    for _ in range(rounds):
        for c in cpus:
            os.sched_setaffinity(0, {c})
            table[c]["python_ns"].append(round(python_ns(), 1))
            table[c]["launch_us"].append(round(launch_us(), 2))
    os.sched_setaffinity(0, set(cpus))
    return table


def sibling(base: int = 0) -> dict:
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {base})
    quiet = [python_ns() for _ in range(3)]
    out = {"quiet_ns": round(statistics.median(quiet), 1)}
    spin = "import os,sys\nos.sched_setaffinity(0,{int(sys.argv[1])})\nwhile True: pass"
    for k in cpus:
        if k == base:
            continue
        p = subprocess.Popen([sys.executable, "-c", spin, str(k)])
        time.sleep(0.15)
        out[k] = round(statistics.median(python_ns() for _ in range(3)), 1)
        p.kill()
        p.wait()
    os.sched_setaffinity(0, set(cpus))
    return out


def processes(n: int) -> list[dict]:
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]); import probe_host as p; "
            "print(json.dumps({'python_ns': round(p.python_ns(2_000_000), 1), 'launch_us': round(p.launch_us(20_000), 2)}))")
    rows = []
    for _ in range(n):
        done = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], capture_output=True, text=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else
                    {"error": done.stderr[-500:]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/probe_host.json"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=6)
    args = parser.parse_args()
    result = {"topology": topology()}
    t = result["topology"]
    print(t["lscpu"], t["nvidia-smi"], f"autogroup {t['autogroup']}, nodes {t['nodes']}, governor {t['governor']}, "
          f"load {t['loadavg']}", sep="\n")
    print("siblings:", t["siblings"])
    result["per_core"] = per_core(args.rounds)
    result["sibling_of_cpu0"] = sibling(0)
    result["processes"] = processes(args.processes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print("\ncpu  python ns per round        launch µs per round")
    for c, r in result["per_core"].items():
        print(f"{c:>3}  {' '.join(f'{x:6.1f}' for x in r['python_ns']):28} {' '.join(f'{x:6.2f}' for x in r['launch_us'])}")
    s = result["sibling_of_cpu0"]
    print(f"\nCPU 0 python ns, quiet {s['quiet_ns']}; with a spinner on CPU k: "
          + ", ".join(f"{k}:{v}" for k, v in s.items() if k != "quiet_ns"))
    print("fresh processes (python ns, launch µs):",
          ", ".join(f"({r.get('python_ns')}, {r.get('launch_us')})" for r in result["processes"]))


if __name__ == "__main__":
    main()
