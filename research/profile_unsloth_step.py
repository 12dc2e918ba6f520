"""Where a LoRA step's time goes under `train --backend unsloth`, against Unsloth's hand loop.

One process, one Unsloth model (the 1B-shaped LoRA job of bench_unsloth.py, built with the
unsloth child's own translation), then:

    hand            forward + backward + clip + AdamW on ids made on the GPU (no data path)
    trainer         the trainer the unsloth child builds (runners/unsloth/child.py build_trainer),
                    trainhub's metrics callback on; each step is split into GPU time (step begin ->
                    a synchronize at step end) and the time outside it (the log, the next batch's
                    fetch, collation and copy, callbacks), with the collator timed on its own
    trainer+<knob>  the same with one TrainingArguments knob changed (dataloader workers, the Trainer's
                    NaN filter, ...) or without accelerate's bf16 autocast around the model's forward
    hand+<what>     the hand loop under that autocast, or fed the trainer's own first batch (attention
                    mask and -100 labels), to tell the model's inputs from the Trainer's loop

and a torch.profiler table of two trainer steps (host time by op, self), with the ops that make the
host wait for the GPU counted. The timing
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


def build(tmp: Path, steps: int, checkpointing: bool):
    import torch
    import yaml
    from unsloth import FastLanguageModel

    from trainhub.engine.model import build_tokenizer
    from trainhub.jobfile import load
    from trainhub.runners.unsloth.translate import load_args, peft_args

    folder = tmp / "llama-1b-shape"
    bench.make_model(folder)
    chats = tmp / "chats.jsonl"
    bench.make_chats(chats, steps * bench.MICRO + 8)
    run_dir = tmp / "profile-run"
    run_dir.mkdir(parents=True, exist_ok=True)
    path = tmp / "profile.yaml"
    path.write_text(yaml.safe_dump(bench.bench_job(folder, chats, run_dir, steps, "lora", checkpointing)))
    job = load(path)
    kwargs = load_args(job)
    kwargs["dtype"] = torch.bfloat16
    model, _ = FastLanguageModel.from_pretrained(**kwargs)
    model = FastLanguageModel.get_peft_model(model, **peft_args(job))
    return job, model, build_tokenizer(job, run_dir), run_dir


SYNCS = ("aten::item", "aten::_local_scalar_dense", "aten::is_nonzero", "cudaStreamSynchronize",
         "cudaDeviceSynchronize", "cudaMemcpyAsync", "cudaEventSynchronize")
"""Profiler rows whose calls can leave the GPU idle while the host waits or relaunches."""


def trainer_run(job, model, tokenizer, run_dir: Path, warmup: int, knobs: dict, profile: bool = False,
                autocast: bool = True, phases: bool = False) -> dict:
    """`phases`: a sync before and after the optimizer step too, splitting the step into forward+backward+clip
    (and the Trainer's work around them), the optimizer step, and the rest (scheduler, zero_grad, callbacks)."""
    import torch
    from transformers import TrainerCallback

    import trainhub.runners.unsloth.translate as ut_translate
    from trainhub.hf.callback import MetricsCallback, start_fields
    from trainhub.metrics.log import MetricLog
    from trainhub.runners.unsloth.child import build_trainer

    spec_of = ut_translate.unsloth_spec

    def spec_with_knobs(*args, **kwargs):  # the knobs go in before the trainer (and its accelerator) exist
        spec = spec_of(*args, **kwargs)
        spec["args"].update(knobs)
        return spec

    ut_translate.unsloth_spec = spec_with_knobs  # build_trainer imports it when called
    try:
        trainer, *_ = build_trainer(job, model, tokenizer, run_dir, "bf16", dry_run=False, resume=None)
    finally:
        ut_translate.unsloth_spec = spec_of
    if not autocast:
        trainer.accelerator.native_amp = False  # prepare() then leaves model.forward unwrapped
    collate, collate_s = trainer.data_collator, []

    def timed_collate(features):
        t0 = time.perf_counter()
        out = collate(features)
        collate_s.append(time.perf_counter() - t0)
        return out

    trainer.data_collator = timed_collate
    begins, ends, pre_opt, post_opt = [], [], [], []

    def synced(into: list) -> None:
        torch.cuda.synchronize()
        into.append(time.perf_counter())

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            begins.append(time.perf_counter())

        def on_pre_optimizer_step(self, args, state, control, **kwargs):
            if phases:
                synced(pre_opt)

        def on_optimizer_step(self, args, state, control, **kwargs):
            if phases:
                synced(post_opt)

        def on_step_end(self, args, state, control, **kwargs):
            synced(ends)

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
            train(trainer, model)
        log.close()
        rows = prof.key_averages()
        return {"table": rows.table(sort_by="self_cpu_time_total", row_limit=25),
                "syncs": {r.key: r.count for r in rows if r.key in SYNCS}}
    train(trainer, model)
    log.close()
    n = len(ends)
    period = [begins[i + 1] - begins[i] for i in range(warmup, n - 1)]
    gpu = [ends[i] - begins[i] for i in range(warmup, n - 1)]
    outside = [begins[i + 1] - ends[i] for i in range(warmup, n - 1)]
    split = {}
    if phases:
        split = {"fwd_bwd_clip_s": statistics.median(pre_opt[i] - begins[i] for i in range(warmup, n - 1)),
                 "optim_s": statistics.median(post_opt[i] - pre_opt[i] for i in range(warmup, n - 1)),
                 "after_s": statistics.median(ends[i] - post_opt[i] for i in range(warmup, n - 1))}
    return {**split, "step_s": statistics.median(period), "gpu_s": statistics.median(gpu),
            "outside_s": statistics.median(outside),
            "collate_s": statistics.median(collate_s[warmup:]) if len(collate_s) > warmup else None,
            "steps": n}


def train(trainer, model) -> None:
    """trainer.train(), then the model's forward as it was: accelerate's prepare() wraps it in autocast for
    every trainer made on it, and the runs after this one must not inherit that."""
    had = "forward" in model.__dict__
    forward = model.__dict__.get("forward")
    try:
        trainer.train()
    finally:
        if had:
            model.forward = forward
        else:
            model.__dict__.pop("forward", None)


def first_batch(job, model, tokenizer, run_dir: Path) -> dict:
    """The trainer's first batch (PadCollator's tensors), on the GPU."""
    from trainhub.runners.unsloth.child import build_trainer

    trainer, *_ = build_trainer(job, model, tokenizer, run_dir, "bf16", dry_run=False, resume=None)
    batch = next(iter(trainer.get_train_dataloader()))
    return {k: v.to("cuda") for k, v in batch.items() if k in ("input_ids", "attention_mask", "labels")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("/tmp/profile_unsloth.json"))
    parser.add_argument("--tmp", type=Path, default=Path("/tmp/bench_unsloth"))
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--no-checkpointing", action="store_true")
    args = parser.parse_args()
    import torch

    args.tmp.mkdir(parents=True, exist_ok=True)
    total = args.steps + args.warmup
    job, model, tokenizer, run_dir = build(args.tmp, total, not args.no_checkpointing)
    results: dict = {"device": torch.cuda.get_device_name(), "hand": bench.timed_steps(model, args.steps, args.warmup)}
    batch = first_batch(job, model, tokenizer, run_dir)  # after "hand": nothing a trainer does reaches it
    for name, kwargs in {"hand+autocast": {"autocast": True}, "hand+batch": {"batch": batch},
                         "hand+batch+autocast": {"batch": batch, "autocast": True}}.items():
        results[name] = bench.timed_steps(model, args.steps, args.warmup, **kwargs)
    nan_filter = {"logging_nan_inf_filter": True}  # transformers' default; trainhub turns it off
    variants = {"trainer": ({}, True), "trainer+nan-filter": (nan_filter, True),
                "trainer+no-autocast": ({}, False),
                "trainer+workers2": ({"dataloader_num_workers": 2, "dataloader_prefetch_factor": 2,
                                      "dataloader_persistent_workers": True}, True)}
    for name, (knobs, autocast) in variants.items():
        results[name] = trainer_run(job, model, tokenizer, run_dir, args.warmup, knobs, autocast=autocast)
        args.out.write_text(json.dumps(results, indent=1))
    results["hand(again)"] = bench.timed_steps(model, args.steps, args.warmup)
    results["hand+batch+autocast(phases)"] = bench.timed_steps(model, args.steps, args.warmup, batch=batch,
                                                               autocast=True, phases=True)
    results["trainer(phases)"] = trainer_run(job, model, tokenizer, run_dir, args.warmup, {}, phases=True)
    args.out.write_text(json.dumps(results, indent=1))
    profiled = trainer_run(job, model, tokenizer, run_dir, 0, {}, profile=True)
    results["profile"], results["profile_syncs"] = profiled["table"], profiled["syncs"]
    args.out.write_text(json.dumps(results, indent=1))
    print(results["profile"])
    print("host-wait ops over two profiled trainer steps:", results["profile_syncs"])
    print(f"\n{results['device']}: LoRA 1B shape, checkpointing {not args.no_checkpointing}, {bench.MICRO} x {bench.SEQ} tokens, median of {args.steps} steps")
    print(f"{'variant':34} {'step ms':>8} {'GPU ms':>8} {'outside':>8} {'collate':>8} {'tok/s':>8}")
    for name, r in results.items():
        if not isinstance(r, dict) or "step_s" not in r:
            continue
        cells = [r.get(k) for k in ("step_s", "gpu_s", "outside_s", "collate_s")]
        text = " ".join(f"{1000 * c:>8.1f}" if c is not None else f"{'':>8}" for c in cells)
        print(f"{name:34} {text} {bench.MICRO * bench.SEQ / r['step_s']:>8.0f}")
    for name, r in results.items():
        split = {k[:-2]: f"{1000 * v:.1f} ms" for k, v in (r.items() if isinstance(r, dict) else ())
                 if k in ("fwd_bwd_s", "clip_s", "optim_s", "fwd_bwd_clip_s", "after_s")}
        if split:
            print(f"{name:34} phases, each ended by a sync: {split}")


if __name__ == "__main__":
    main()
