"""Where a LoRA step's time goes under `train --backend unsloth`, against Unsloth's hand loop.

One process, one Unsloth model (the 1B-shaped LoRA job of bench_unsloth.py, built with the
unsloth child's own translation), then:

    hand            forward + backward + clip + AdamW on ids made on the GPU (no data path)
    trainer         the trainer the unsloth child builds (runners/unsloth_trainer.build_trainer),
                    trainhub's metrics callback on; each step is split into GPU time (step begin ->
                    a synchronize at step end) and the time outside it (the log, the next batch's
                    fetch, collation and copy, callbacks), with the collator timed on its own
    trainer+<knob>  the same with one TrainingArguments knob changed (dataloader workers, ...)

and a torch.profiler table of two trainer steps (host time by op, self). The timing
synchronize at step end costs nothing here: with a log every step, the Trainer synchronizes there
anyway. Run on the GPU machine (../shared/gpu/README.md):

    python research/profile_unsloth_step.py --out $OUT/profile_unsloth.json
"""

from __future__ import annotations

# ruff: isort: skip_file
import unsloth  # noqa: F401  first, as in the unsloth child

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "research"))

import bench_unsloth as bench  # noqa: E402


def build(tmp: Path, steps: int):
    import torch
    import yaml
    from unsloth import FastLanguageModel

    from trainhub.engine.model import build_tokenizer
    from trainhub.jobfile import load
    from trainhub.runners.unsloth import load_args, peft_args

    folder = tmp / "llama-1b-shape"
    bench.make_model(folder)
    chats = tmp / "chats.jsonl"
    bench.make_chats(chats, steps * bench.MICRO + 8)
    run_dir = tmp / "profile-run"
    run_dir.mkdir(parents=True, exist_ok=True)
    path = tmp / "profile.yaml"
    path.write_text(yaml.safe_dump(bench.bench_job(folder, chats, run_dir, steps, "lora")))
    job = load(path)
    kwargs = load_args(job)
    kwargs["dtype"] = torch.bfloat16
    model, _ = FastLanguageModel.from_pretrained(**kwargs)
    model = FastLanguageModel.get_peft_model(model, **peft_args(job))
    return job, model, build_tokenizer(job, run_dir), run_dir


def trainer_run(job, model, tokenizer, run_dir: Path, warmup: int, knobs: dict, profile: bool = False) -> dict:
    import torch
    from transformers import TrainerCallback

    from trainhub.metrics.hf_callback import MetricsCallback, start_fields
    from trainhub.metrics.log import MetricLog
    from trainhub.runners.unsloth_trainer import build_trainer

    trainer, _, _ = build_trainer(job, model, tokenizer, run_dir, "bf16", dry_run=False, resume=None)
    for key, value in knobs.items():
        setattr(trainer.args, key, value)
    collate, collate_s = trainer.data_collator, []

    def timed_collate(features):
        t0 = time.perf_counter()
        out = collate(features)
        collate_s.append(time.perf_counter() - t0)
        return out

    trainer.data_collator = timed_collate
    begins, ends = [], []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            begins.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kwargs):
            torch.cuda.synchronize()
            ends.append(time.perf_counter())

    log = MetricLog(run_dir / f"metrics-{len(knobs)}-{int(profile)}.jsonl")
    trainer.add_callback(MetricsCallback(log, "profile", seq_len=bench.SEQ,
                                         start_fields=start_fields(backend="unsloth", job=job, precision="bf16",
                                                                   tokens_per_step=bench.MICRO * bench.SEQ,
                                                                   notes=[], data={}, resumed_from=None)))
    trainer.add_callback(Clock())
    if profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile, schedule

        prof = torch_profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                             schedule=schedule(wait=2, warmup=1, active=2, repeat=1))

        class Step(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                prof.step()

        trainer.add_callback(Step())
        with prof:
            trainer.train()
        log.close()
        return {"table": prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)}
    trainer.train()
    log.close()
    n = len(ends)
    period = [begins[i + 1] - begins[i] for i in range(warmup, n - 1)]
    gpu = [ends[i] - begins[i] for i in range(warmup, n - 1)]
    outside = [begins[i + 1] - ends[i] for i in range(warmup, n - 1)]
    return {"step_s": statistics.median(period), "gpu_s": statistics.median(gpu),
            "outside_s": statistics.median(outside),
            "collate_s": statistics.median(collate_s[warmup:]) if len(collate_s) > warmup else None,
            "steps": n}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/profile_unsloth.json"))
    parser.add_argument("--tmp", type=Path, default=Path("/tmp/bench_unsloth"))
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=4)
    args = parser.parse_args()
    import torch

    args.tmp.mkdir(parents=True, exist_ok=True)
    total = args.steps + args.warmup
    job, model, tokenizer, run_dir = build(args.tmp, total)
    results = {"device": torch.cuda.get_device_name(), "hand": bench.timed_steps(model, args.steps, args.warmup)}
    variants = {"trainer": {}, "trainer+workers2": {"dataloader_num_workers": 2, "dataloader_prefetch_factor": 2,
                                                    "dataloader_persistent_workers": True},
                "trainer+no-pin": {"dataloader_pin_memory": False}}
    for name, knobs in variants.items():
        results[name] = trainer_run(job, model, tokenizer, run_dir, args.warmup, knobs)
    results["profile"] = trainer_run(job, model, tokenizer, run_dir, 0, {}, profile=True)["table"]
    args.out.write_text(json.dumps(results, indent=1))
    print(results["profile"])
    print(f"\n{results['device']}: LoRA 1B shape, {bench.MICRO} x {bench.SEQ} tokens, median of {args.steps} steps")
    print(f"{'variant':18} {'step ms':>8} {'GPU ms':>8} {'outside':>8} {'collate':>8} {'tok/s':>8}")
    for name, r in results.items():
        if not isinstance(r, dict):
            continue
        cells = [r.get(k) for k in ("step_s", "gpu_s", "outside_s", "collate_s")]
        text = " ".join(f"{1000 * c:>8.1f}" if c is not None else f"{'':>8}" for c in cells)
        print(f"{name:18} {text} {bench.MICRO * bench.SEQ / r['step_s']:>8.0f}")


if __name__ == "__main__":
    main()
