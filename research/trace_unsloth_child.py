"""Where the time of a `train --backend unsloth` step goes, in the unsloth child's own code path.

bench_unsloth.py measures `train --backend unsloth` (a hub process and its child) against Unsloth's
hand loop; profile_unsloth_step.py rebuilds the trainer inside one process. This script runs the
child itself (trainhub.runners.unsloth.child.main, on the job file bench_unsloth.py writes, with the
environment the hub gives it) in a fresh process, with two callbacks added before training:

    clock   CUDA events and host times at every step's begin and end, no extra sync: the wall time
            of a step (begin to begin), the GPU timeline's time (event to event), and how much of
            it the host spent outside the step (end to next begin)
    trace   (a separate run) torch.profiler over a few steps after the warm-up: the GPU's busy time
            per step (the union of its kernels), its idle gaps and the host op running when each
            gap began

Suffixes, on `child` or `hand`: `-cprofile` runs cProfile over 3 steps after the warm-up (host Python
time by function: where the child's extra host time per step goes); `-syncs` turns on CUDA's sync
debug mode over the same steps and counts each host-device sync by the Python stack that made it
(a sync empties the GPU's queue, so the host's launch time after it is no longer hidden).

`child-bare` is the child with nothing of this script's around its training (no host probe, step
clock or gc meter; the step time from its rows). `child-latecache` sets UNSLOTH_COMPILE_LOCATION after importing unsloth, so Unsloth compiles into
its default folder (every child variant did so before 2026-12-04). `child-walks` is the child with the Trainer's module walks in every step, as they come (no
skip_module_walks, no Unsloth fast grads). `child-sync` is the child with the Trainer's own log (a sync at every logged step) instead of the
log one step late (hf/deferred.py); `child-deviceread` reads that late log from the device tensors (which
waits for the step queued after it too), as before the pinned copies; `child-setsid` is the child in a session of its own; `launch` is the child the hub would start (its
argv, environment and cwd, output through a pipe), started by this script instead of the hub;
`launch-nodetach`, `launch-split`, `launch-bareenv`, `launch-all` take its differences from `child`
away (launch_without_hub). Also
the same clock and trace around the hand loop (direct+autocast: Unsloth's model, forward under
bf16 autocast, backward, clip, fused AdamW, a loss.item() per step). Also `train` itself through
the hub, for the step time of the rows. Each variant runs in its own process. Run on the GPU
machine (../shared/gpu/README.md):

    python research/trace_unsloth_child.py --no-checkpointing --out $OUT/trace
"""

from __future__ import annotations

# ruff: isort: skip_file

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "research"))


# ----------------------------------------------------------------------------- step clocks


class StepClock:
    """CUDA events and perf_counter at each step's begin and end; `summary(warmup)` after a final sync."""

    def __init__(self):
        import torch

        self.torch = torch
        self.begin, self.end = [], []  # (event, host time)

    def mark(self, into: list) -> None:
        event = self.torch.cuda.Event(enable_timing=True)
        event.record()
        into.append((event, time.perf_counter()))

    def summary(self, warmup: int) -> dict:
        self.torch.cuda.synchronize()
        n = min(len(self.begin), len(self.end))
        idx = range(warmup, n - 1)
        if not idx:
            return {"error": f"only {n} steps"}
        wall = [self.begin[i + 1][1] - self.begin[i][1] for i in idx]
        gpu = [self.begin[i][0].elapsed_time(self.begin[i + 1][0]) / 1e3 for i in idx]
        inside_host = [self.end[i][1] - self.begin[i][1] for i in idx]
        outside_host = [self.begin[i + 1][1] - self.end[i][1] for i in idx]
        return {"step_s": statistics.median(wall), "gpu_step_s": statistics.median(gpu),
                "host_in_step_s": statistics.median(inside_host), "host_between_steps_s": statistics.median(outside_host),
                "steps": len(idx), "windows_s": [round(w, 4) for w in wall]}


def tracer(out: Path, name: str, skip: int, active: int):
    """A torch.profiler that records `active` steps after `skip`; call .step() at each step's end."""
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    def done(prof):
        prof.export_chrome_trace(str(out / f"{name}.trace.json"))

    return profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                   schedule=schedule(wait=max(skip - 1, 0), warmup=1, active=active, repeat=1),
                   on_trace_ready=done, record_shapes=False, with_stack=False) \
        if torch.cuda.is_available() else None


def host_probe() -> dict:
    """This process's host speed, apart from any training code: the time to launch one tiny CUDA kernel
    (20,000 in a row, then a sync) and a pure-Python loop's time per iteration. Two processes running the
    same model code differ by as much as their host speeds differ, once the step is bound by the host."""
    import torch

    x = torch.zeros(16, device="cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(20_000):
        x.add_(1)
    torch.cuda.synchronize()
    launch = (time.perf_counter() - t0) / 20_000
    import bench_unsloth as bench

    return {"launch_us": round(1e6 * launch, 2), "python_ns": bench.host_ns(2_000_000)}


class GcMeter:
    """Time spent in Python's garbage collector, per generation, from gc.callbacks: a full (generation 2)
    collection walks every tracked object of a process that holds torch, transformers and Unsloth, and it
    runs inside whatever step allocated the object that crossed the threshold."""

    def __init__(self):
        import gc

        self.gc, self.t0, self.total, self.count = gc, 0.0, [0.0, 0.0, 0.0], [0, 0, 0]
        self.at_warm: tuple[list, list] | None = None
        gc.callbacks.append(self._on)

    def warm(self) -> None:
        """Mark the end of the warm-up (Unsloth's compile runs in the first steps and allocates heavily)."""
        self.at_warm = (list(self.total), list(self.count))

    def _on(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.t0 = time.perf_counter()
        else:
            self.total[info["generation"]] += time.perf_counter() - self.t0
            self.count[info["generation"]] += 1

    def summary(self, steps: int) -> dict:
        self.gc.callbacks.remove(self._on)
        out = {"gc_ms_per_step": round(1e3 * sum(self.total) / max(steps, 1), 2),
               "gc_ms_by_gen": [round(1e3 * t, 1) for t in self.total], "gc_count_by_gen": self.count,
               "gc_tracked": len(self.gc.get_objects())}
        if self.at_warm is not None:  # the measured steps alone
            (t0, c0) = self.at_warm
            out["warm_gc_ms_by_gen"] = [round(1e3 * (a - b), 1) for a, b in zip(self.total, t0, strict=True)]
            out["warm_gc_count_by_gen"] = [a - b for a, b in zip(self.count, c0, strict=True)]
        return out


def quiet_gc() -> None:
    """What the `-nogc` variants do before training: collect, freeze what survives, switch automatic
    collection off."""
    import gc

    gc.collect()
    gc.freeze()
    gc.disable()


def row_windows(run_dir: Path, warmup: int) -> list[float]:
    """Seconds per step of each window between the run's train rows past the warm-up (bench_unsloth's reading)."""
    import bench_unsloth as bench

    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return bench.seconds_per_step(bench.window_pairs([r for r in rows if r["event"] == "train"], warmup))


class HostWatch:
    """cProfile (`-cprofile`) or CUDA's sync debug mode (`-syncs`) over steps [warmup, warmup + 3):
    `begin(step)` and `end(step)` are called at each step's begin and end; `summary(out, name)` writes the
    profile's text and returns the syncs counted by their Python stack."""

    def __init__(self, name: str, warmup: int):
        self.kind = "cprofile" if name.endswith("cprofile") else "syncs" if name.endswith("syncs") else None
        self.warmup, self.stacks, self.profile, self.on = warmup, {}, None, False

    def begin(self, step: int) -> None:
        if self.kind is None or step != self.warmup:
            return
        self.on = True
        if self.kind == "cprofile":
            import cProfile

            self.profile = cProfile.Profile()
            self.profile.enable()
        else:
            import warnings

            import torch

            self._show = warnings.showwarning
            warnings.showwarning = self._sync
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

    def end(self, step: int) -> None:
        if not self.on or step != self.warmup + 2:
            return
        self.on = False
        if self.profile is not None:
            self.profile.disable()
        else:
            import warnings

            import torch

            torch.cuda.set_sync_debug_mode("default")
            warnings.showwarning = self._show

    def _sync(self, message, category, filename, lineno, file=None, line=None):
        import traceback

        frames = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in traceback.extract_stack()[:-2]
                  if "trace_unsloth_child" not in f.filename and "/threading.py" not in f.filename][-8:]
        key = " <- ".join(reversed(frames)) + f" | {str(message)[:80]}"
        self.stacks[key] = self.stacks.get(key, 0) + 1

    def summary(self, out: Path, name: str) -> dict:
        if self.kind == "cprofile" and self.profile is not None:
            import io
            import pstats

            text = io.StringIO()
            stats = pstats.Stats(self.profile, stream=text)
            stats.sort_stats("cumulative").print_stats(60)
            stats.sort_stats("tottime").print_stats(40)
            (out / f"{name}.cprofile.txt").write_text(text.getvalue())
            return {"cprofile": f"{name}.cprofile.txt", "profiled_s": round(stats.total_tt, 3)}
        if self.kind == "syncs":
            return {"syncs_in_3_steps": sum(self.stacks.values()),
                    "sync_stacks": dict(sorted(self.stacks.items(), key=lambda kv: -kv[1]))}
        return {}


# ----------------------------------------------------------------------------- the child, in this process


def run_child(job_path: Path, run_dir: Path, out: Path, name: str, warmup: int, trace: bool,
              nogc: bool = False) -> dict:
    # the runner's UNSLOTH_COMPILE_LOCATION, before the import that reads it (unsloth_zoo's compiler), as in
    # the child the hub starts; `child-latecache` sets it after the import, as every child variant did
    # before 2026-12-04 (research/results/unsloth.md, eighth session), so Unsloth used its default folder
    from trainhub.runners.unsloth.runner import COMPILE_CACHE

    cache = {"UNSLOTH_COMPILE_LOCATION": str(run_dir / COMPILE_CACHE)}
    if not name.endswith("latecache"):
        os.environ.update(cache)
    import unsloth  # noqa: F401  first, as in the child

    from transformers import TrainerCallback

    import trainhub.runners.trl.trainer as trl_train
    from trainhub.jobfile import load
    from trainhub.runners.unsloth import child as unsloth_child

    job = load(job_path)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "job.json").write_text(job.model_dump_json())
    os.environ.update({"TOKENIZERS_PARALLELISM": "false", **cache})
    os.chdir(run_dir)
    clock = StepClock()
    prof = tracer(out, name, warmup, 3) if trace else None
    watch = HostWatch(name, warmup)

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if len(clock.begin) == warmup and "gc" in probes:
                probes["gc"].warm()
            watch.begin(len(clock.begin))
            clock.mark(clock.begin)

        def on_step_end(self, args, state, control, **kwargs):
            watch.end(len(clock.end))
            clock.mark(clock.end)
            if prof is not None:
                prof.step()

    inner = trl_train.run
    probes = {}

    bare = "bare" in name.split("-")

    def run(trainer, resume):
        if bare:  # nothing of this script's in the process's training: no probe, clock or gc meter
            return inner(trainer, resume)
        probes["probe_before"] = host_probe()
        trainer.add_callback(Clock())
        if nogc:
            quiet_gc()
        probes["gc"] = GcMeter()
        if prof is not None:
            prof.start()
        try:
            return inner(trainer, resume)
        finally:
            if prof is not None:
                prof.stop()

    trl_train.run = run
    if name.endswith("sync"):  # the Trainer's own log, a sync every logged step (before hf/deferred.py)
        import trainhub.hf.deferred as deferred

        deferred.defer_logs = lambda trainer, tokens=None, notes=None: None
    if name.endswith("deviceread"):  # the log one step late, read from the device tensors as before the pinned
        import trainhub.hf.deferred as deferred  # copies: the read waits for the next step too

        deferred.to_host = lambda *values: (list(values), None)
    if name.endswith("walks"):  # the Trainer's per-step module walks as they come (no skip_module_walks)
        import trainhub.hf.flops as flops

        flops.skip_module_walks = lambda trainer, notes=None: False
        unsloth_child.unsloth_fast_grads = lambda model: False
    code = unsloth_child.main(["--run-dir", str(run_dir)])
    windows = row_windows(run_dir, warmup)
    if bare:
        return {"step_s": statistics.median(windows) if windows else None, "exit": code,
                "windows_s": [round(w, 4) for w in windows]}
    probes["gc"] = probes["gc"].summary(len(clock.begin)) if "gc" in probes else None
    probes.update(watch.summary(out, name))
    generated = sorted(Path(os.environ["UNSLOTH_COMPILE_LOCATION"]).glob("*SFTTrainer*.py"))
    if generated:  # the trainer Unsloth generated and ran, to read its compute_loss
        (out / generated[0].name).write_text(generated[0].read_text())
    return {**clock.summary(warmup), **probes, "probe_after": host_probe(), "exit": code,
            "rows_step_s": statistics.median(windows) if windows else None,
            "log_every": job.train.log_every}


# ----------------------------------------------------------------------------- the hand loop, in this process


def run_hand(job_path: Path, out: Path, name: str, steps: int, warmup: int, trace: bool,
             nogc: bool = False) -> dict:
    import unsloth  # noqa: F401

    import torch
    from unsloth import FastLanguageModel

    import bench_unsloth as bench
    from trainhub.jobfile import load
    from trainhub.runners.unsloth.translate import load_args, peft_args

    job = load(job_path)
    kwargs = load_args(job)
    kwargs["dtype"] = torch.bfloat16
    model, _ = FastLanguageModel.from_pretrained(**kwargs)
    model = FastLanguageModel.get_peft_model(model, **peft_args(job))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=bench.LR, weight_decay=0.0, fused=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    clock = StepClock()
    probe = host_probe()
    prof = tracer(out, name, warmup, 3) if trace else None
    if prof is not None:
        prof.start()
    if nogc:
        quiet_gc()
    meter = GcMeter()
    watch = HostWatch(name, warmup)
    for i in range(warmup + steps):
        if i == warmup:
            meter.warm()
        ids = torch.randint(1, 4096, (bench.MICRO, bench.SEQ), device="cuda", generator=gen)
        watch.begin(i)
        clock.mark(clock.begin)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
        watch.end(i)
        clock.mark(clock.end)
        if prof is not None:
            prof.step()
    if prof is not None:
        prof.stop()
    return {**clock.summary(warmup), "probe_before": probe, "probe_after": host_probe(),
            "gc": meter.summary(warmup + steps), **watch.summary(out, name)}


# ----------------------------------------------------------------------------- reading a trace


def gaps(trace_path: Path, min_gap_ms: float = 0.3) -> dict:
    """Per profiled step: the GPU's busy time (union of kernels and copies), its idle time, and the idle gaps
    longer than `min_gap_ms` with the innermost host op running when each began."""
    events = json.loads(trace_path.read_text())["traceEvents"]
    gpu = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                 if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset"))
    steps = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                   if e.get("ph") == "X" and str(e.get("name", "")).startswith("ProfilerStep"))
    host = [e for e in events if e.get("ph") == "X" and e.get("cat") in ("cpu_op", "cuda_runtime", "user_annotation",
                                                                           "python_function", "cuda_driver")]
    result = []
    for s0, s1 in steps:
        busy, idle, last_end, holes = 0.0, 0.0, None, []
        for a, b in gpu:
            if b <= s0 or a >= s1:
                continue
            a, b = max(a, s0), min(b, s1)
            if last_end is None:
                last_end = a
            if a > last_end:
                idle += a - last_end
                if (a - last_end) / 1e3 >= min_gap_ms:
                    at = [e for e in host if e["ts"] <= last_end < e["ts"] + e["dur"]]
                    inner = min(at, key=lambda e: e["dur"])["name"] if at else "?"
                    outer = max(at, key=lambda e: e["dur"])["name"] if at else "?"
                    holes.append({"ms": round((a - last_end) / 1e3, 2), "host_op": inner, "within": outer})
            busy += max(0.0, b - max(a, last_end))
            last_end = max(last_end, b)
        result.append({"step_ms": round((s1 - s0) / 1e3, 1), "gpu_busy_ms": round(busy / 1e3, 1),
                       "gpu_idle_ms": round(idle / 1e3, 1), "gaps": sorted(holes, key=lambda h: -h["ms"])[:12]})
    return {"steps": result}


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/trace_unsloth"))
    parser.add_argument("--tmp", type=Path, default=Path("/tmp/bench_unsloth"))
    parser.add_argument("--steps", type=int, default=14)
    parser.add_argument("--warmup", type=int, default=6)
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--only", default="hub,child,child-log10,child-trace,hand,hand-trace")
    parser.add_argument("--repeat", type=int, default=1, help="run the variants in turn this many times")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child process: one variant
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.tmp.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps({"result": one(args)}), flush=True)
        return

    import bench_unsloth as bench
    import torch
    import yaml

    from trainhub import envs

    if envs.python_of("unsloth") is None:  # the GPU machine: adopt this interpreter (wheels on PYTHONPATH)
        envs.setup("unsloth", python=sys.executable)
    folder = args.tmp / "llama-1b-shape"
    bench.make_model(folder)
    chats = args.tmp / "chats.jsonl"
    bench.make_chats(chats, (args.warmup + args.steps) * bench.MICRO + 8)
    results = {"device": torch.cuda.get_device_name(), "checkpointing": not args.no_checkpointing,
               "steps": args.steps, "warmup": args.warmup}
    for key in [f"{v}#{i}" if args.repeat > 1 else v for i in range(args.repeat) for v in args.only.split(",")]:
        variant = key.split("#")[0]
        host_ns_before = bench.host_ns()  # this (the parent's) process's host speed just before the run
        t0 = time.time()
        if variant == "hub":  # the rows' step time: the median wall time between train rows
            job = bench.bench_job(folder, chats, args.tmp / f"trace-{key.replace('#', '-')}", args.warmup + args.steps, "lora",
                                  not args.no_checkpointing)
            r = bench.through_trainhub(job, args.tmp, args.warmup)
            r.pop("console_tail", None)
        elif variant == "launch":  # the hub's own Launch (argv, environment, cwd, pipes), started without the hub
            r = launch_without_hub(bench.bench_job(folder, chats, args.tmp / f"trace-{key.replace('#', '-')}",
                                                   args.warmup + args.steps, "lora", not args.no_checkpointing),
                                   args.tmp, args.warmup)
        elif variant.startswith("launch-"):  # the hub's Launch with some of its differences from `child` taken away
            r = launch_without_hub(bench.bench_job(folder, chats, args.tmp / f"trace-{key.replace('#', '-')}",
                                                   args.warmup + args.steps, "lora", not args.no_checkpointing),
                                   args.tmp, args.warmup, set(variant.split("-")[1:]))
        else:
            log_every = 10 if variant.endswith("log10") else 1
            run_dir = args.tmp / f"trace-{key.replace('#', '-')}"  # a folder per run: its own metric log
            job = bench.bench_job(folder, chats, run_dir, args.warmup + args.steps, "lora",
                                  not args.no_checkpointing, log_every)
            path = args.tmp / f"trace-{variant}.yaml"
            path.write_text(yaml.safe_dump(job, sort_keys=False))
            done = subprocess.run([sys.executable, __file__, "--one", variant, "--out", str(args.out), "--tmp",
                                   str(args.tmp), "--steps", str(args.steps), "--warmup", str(args.warmup)]
                                  + (["--no-checkpointing"] if args.no_checkpointing else []),
                                  capture_output=True, text=True, start_new_session=variant.endswith("setsid"),
                                  env={**os.environ, "TRACE_JOB": str(path), "TRACE_RUN_DIR": str(run_dir)})
            lines = [line for line in done.stdout.splitlines() if line.startswith('{"result"')]
            r = json.loads(lines[-1])["result"] if lines else {"error": f"exit {done.returncode}",
                                                                 "tail": (done.stdout + done.stderr)[-3000:]}
            trace = args.out / f"{variant}.trace.json"
            if trace.is_file():
                r["trace"] = gaps(trace)
                with open(trace, "rb") as f, gzip.open(f"{trace}.gz", "wb") as g:
                    g.write(f.read())
                trace.unlink()
        r["wall_s"] = round(time.time() - t0, 1)
        r["host_ns_before"] = host_ns_before
        results[key] = r
        print(key, json.dumps({k: v for k, v in r.items() if k not in ("trace", "tail", "notes", "sync_stacks")}),
              flush=True)
        if "tail" in r:
            print(r["tail"], flush=True)
        (args.out / "trace_unsloth.json").write_text(json.dumps(results, indent=1))
    print_table(results)


LAUNCH_CHANGES = {"nodetach", "split", "bareenv", "all"}


def launch_without_hub(job_dict: dict, tmp: Path, warmup: int, changes: set[str] = frozenset()) -> dict:
    """The child the hub would start for the job, started here with the same argv, environment and cwd, its
    output read through a pipe as the hub reads it; the step time from its rows.

    `changes` take away what differs from the `child` variant, one at a time or `all` together:
    `nodetach` no process group or parent-death signal; `split` stdout and stderr in two pipes (the
    `child` variant's capture_output) instead of one merged; `bareenv` this process's environment plus
    the compile location and TOKENIZERS_PARALLELISM only (no PYTHONUNBUFFERED, no offline variables, no
    PYTHONPATH reordered, no run id). Left alike: `-m trainhub.runners.unsloth.child` against the `child`
    variant's call of its main() inside this script (with the clock callbacks)."""
    unknown = changes - LAUNCH_CHANGES
    if unknown:
        raise SystemExit(f"launch-{'-'.join(sorted(unknown))}: unknown; launch- takes {sorted(LAUNCH_CHANGES)}")
    if "all" in changes:
        changes = LAUNCH_CHANGES
    import yaml

    from trainhub.hub import _detach, prepare_run_dir
    from trainhub.jobfile import load
    from trainhub.runners import get_runner

    path = tmp / f"{Path(job_dict['output_dir']).name}.yaml"
    path.write_text(yaml.safe_dump(job_dict, sort_keys=False))
    job = load(path)
    run_dir = prepare_run_dir(job, resuming=False)
    launch = get_runner("unsloth").prepare(job, run_dir)
    env = {**os.environ, **launch.env, "TRAINHUB_RUN_ID": "launch"}
    if "bareenv" in changes:
        env = {**os.environ, **{k: launch.env[k] for k in ("UNSLOTH_COMPILE_LOCATION", "TOKENIZERS_PARALLELISM")}}
    done = subprocess.run(launch.argv, cwd=launch.cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE if "split" in changes else subprocess.STDOUT, text=True,
                          preexec_fn=None if "nodetach" in changes else _detach)
    windows = row_windows(run_dir, warmup)
    if done.returncode != 0 or not windows:
        return {"error": f"exit {done.returncode}", "tail": (done.stdout + (done.stderr or ""))[-3000:]}
    return {"step_s": statistics.median(windows), "windows_s": [round(w, 4) for w in windows]}


def one(args) -> dict:
    job_path = Path(os.environ["TRACE_JOB"])
    variant = args.one
    if variant.startswith("child"):
        return run_child(job_path, Path(os.environ["TRACE_RUN_DIR"]), args.out, variant, args.warmup,
                         trace=variant.endswith("trace"), nogc="nogc" in variant)
    return run_hand(job_path, args.out, variant, args.steps, args.warmup, trace=variant.endswith("trace"),
                    nogc="nogc" in variant)


def print_table(results: dict) -> None:
    print(f"\n{results['device']}: LoRA 1B shape, checkpointing {results['checkpointing']}, medians after "
          f"{results['warmup']} warm-up steps; launch: µs per tiny kernel launch (host probe) before/after")
    print(f"{'variant':14} {'step ms':>8} {'GPU tl ms':>9} {'host in':>8} {'host out':>8} {'busy ms':>8} "
          f"{'idle ms':>8} {'launch µs':>12} {'py ns':>6} {'gc ms':>6} {'gc2':>4}")
    for name, r in results.items():
        if not isinstance(r, dict):
            continue
        if "error" in r:
            print(f"{name:14} error: {r['error']}")
            continue

        def ms(key, r=r):
            return f"{1e3 * r[key]:8.1f}" if r.get(key) is not None else " " * 8
        steps = r.get("trace", {}).get("steps", [])
        busy = f"{statistics.median(s['gpu_busy_ms'] for s in steps):8.1f}" if steps else " " * 8
        idle = f"{statistics.median(s['gpu_idle_ms'] for s in steps):8.1f}" if steps else " " * 8
        before, after = r.get("probe_before", {}), r.get("probe_after", {})
        launch = f"{before.get('launch_us', '')}/{after.get('launch_us', '')}" if before else ""
        gcm = r.get("gc") or {}
        print(f"{name:14} {ms('step_s')} {ms('gpu_step_s'):>9} {ms('host_in_step_s')} {ms('host_between_steps_s')} "
              f"{busy} {idle} {launch:>12} {before.get('python_ns', ''):>6} {gcm.get('gc_ms_per_step', ''):>6} "
              f"{(gcm.get('gc_count_by_gen') or ['', '', ''])[2]:>4}")
    pairs = [(results[k]["step_s"], results[k.replace("child", "hand")]["step_s"]) for k in results
             if k.split("#")[0] == "child" and "step_s" in results[k]
             and "step_s" in results.get(k.replace("child", "hand"), {})]
    if pairs:
        over = [100 * (c / h - 1) for c, h in pairs]
        print(f"child's step time over the hand loop's, pair by pair: {', '.join(f'{x:.1f}%' for x in over)} "
              f"(median {statistics.median(over):.1f}%)")
    by_variant: dict[str, list[float]] = {}
    for name, r in results.items():
        if isinstance(r, dict) and r.get("step_s"):
            by_variant.setdefault(name.split("#")[0], []).append(1e3 * r["step_s"])
    for variant, ms_list in by_variant.items():
        print(f"{variant:14} step ms, run by run: {', '.join(f'{x:.1f}' for x in ms_list)} "
              f"(median {statistics.median(ms_list):.1f})")
    for name, r in results.items():
        for stack, n in list((r.get("sync_stacks") or {}).items())[:8] if isinstance(r, dict) else []:
            print(f"{name} sync x{n}: {stack}")
    for name, r in results.items():
        for i, s in enumerate(r.get("trace", {}).get("steps", []) if isinstance(r, dict) else []):
            holes = ", ".join(f"{g['ms']} ms in {g['host_op']} ({g['within']})" for g in s["gaps"][:6])
            print(f"{name} traced step {i}: {s['step_ms']} ms, GPU busy {s['gpu_busy_ms']}, idle {s['gpu_idle_ms']}; "
                  f"gaps: {holes}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    main()
