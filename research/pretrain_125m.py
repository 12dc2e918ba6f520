"""The ~125M pretraining run that the quality benchmarks share (bench_optim_quality.py: optimizers against AdamW;
bench_fp8_drift.py: fp8 recipes against bf16): one job builder, one runner through `train`, one loss plot.

Model: a GPT-2-small-sized Llama (hidden 768, MLP 3072, 12 layers, 12 heads: 113M parameters in the blocks, plus
the embedding of a BPE tokenizer trained on the corpus), from nothing, fp32 masters under bf16 autocast, compiled
on a GPU. `tiny` is a 30k-parameter model, eager, for a CPU check of a script.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STORIES = ROOT / "config" / "data" / "stories.jsonl"
STORIES_EVAL = ROOT / "config" / "data" / "stories_eval.jsonl"
M125 = {"family": "llama", "hidden_size": 768, "intermediate_size": 3072, "num_layers": 12, "num_heads": 12,
        "num_kv_heads": 12}
CORPUS = ROOT / "research" / "data" / "python-docs"  # research/get_corpus.py builds it (git-ignored)
BUDGET = {"steps": 300, "seq": 512, "micro_batch": 32, "evals": 10, "vocab": 8192}
"""The shared token budget: 300 steps x 32 x 512 = 4.9 M tokens, about two passes over CORPUS."""
ADAMW = {"type": "adamw", "lr": 3e-3, "betas": [0.9, 0.95], "weight_decay": 0.1}
"""config/presets/optim-adamw.yaml's small-model recipe, the reference runs' optimizer."""
TINY = {"family": "llama", "hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4,
        "num_kv_heads": 2}


def first_then(parser, flag: str, value: str, allowed: tuple[str, ...]) -> list[str]:
    """A comma list of runs for `flag`: allowed[0] (the reference the others are compared with) first, then any
    of the rest; a parser error otherwise."""
    names = value.split(",")
    if names[0] != allowed[0] or set(names) - set(allowed):
        parser.error(f"{flag}: {allowed[0]} first, then any of {', '.join(allowed[1:])}")
    return names


def pretrain_job(name: str, run_dir: Path, *, tiny: bool, train: Path, eval_: Path, steps: int, seq: int,
                 micro_batch: int, evals: int, vocab: int, optim: dict | None = None, extends: list | None = None,
                 precision="bf16", seed: int = 0) -> dict:
    """The job as a dict: `extends` (presets such as optim-muon) goes first, so the job's own keys refine it.
    `seed`: the model's initialization and the batches' order (both runs of a comparison take the same)."""
    job = {
        "name": name, "output_dir": str(run_dir), "seed": seed,
        "backend": {"type": "native", "compile": not tiny},
        "model": {"init": {**(TINY if tiny else M125), "max_position_embeddings": seq,
                           "tokenizer": {"type": "train", "vocab_size": 400 if tiny else vocab}},
                  "dtype": "float32", "attention": "sdpa"},
        "method": "pretrain",
        "data": {"train": str(train), "eval": str(eval_), "format": "text", "max_length": seq, "shuffle": True},
        "schedule": {"warmup_steps": max(1, steps // 20)},
        "train": {"micro_batch_size": micro_batch, "max_steps": steps, "precision": precision, "log_every": 1,
                  "eval_every": max(1, steps // evals), "grad_clip": 1.0},
        "log": {"console": "plain"},
    }
    if optim is not None:
        job["optim"] = optim
    if extends:
        job = {"extends": extends, **job}
    return job


def run_job(name: str, job: dict, work: Path, keep_log: Path | None = None) -> Path:
    """`train --config` on the job (its YAML in work/); the metric log copied to keep_log if given; the run folder
    (final model and checkpoint, ~1.5 GB at 125M) deleted. Returns the kept log, or raises with the run's tail."""
    import yaml

    config = work / f"{name}.yaml"
    config.write_text(yaml.safe_dump(job, sort_keys=False))
    proc = subprocess.run([sys.executable, "-m", "trainhub", "train", "--config", str(config)],
                          capture_output=True, text=True)
    run_dir = Path(job["output_dir"])
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    log = keep_log or work / f"{name}.metrics.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "metrics.jsonl", log)
    shutil.rmtree(run_dir)
    return log


def default_corpus() -> tuple[Path, Path]:
    """(train, eval): CORPUS when research/get_corpus.py has built it, else the shipped stories."""
    if (CORPUS / "train.jsonl").is_file():
        return CORPUS / "train.jsonl", CORPUS / "eval.jsonl"
    return STORIES, STORIES_EVAL


def run_jobs(names: list[str], make_job: Callable[[str, Path], dict], out: Path | None) -> tuple[dict, dict]:
    """Each name's job (make_job(name, run_dir)) through `train`, one after the other in a temporary folder; each
    metric log kept beside `out` as <out stem>.<name>.jsonl when out is given. Returns (rows by name, the error
    message by name of the runs that failed), so one failed run does not end the benchmark."""
    from trainhub.metrics import read_rows

    logs, errors = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(f"--- {name}", flush=True)
            keep = out.with_suffix(f".{name}.jsonl") if out else None
            try:
                logs[name] = read_rows(run_job(name, make_job(name, Path(tmp) / name), Path(tmp), keep))
            except RuntimeError as err:
                print(err, flush=True)
                errors[name] = str(err)[-1500:]
    return logs, errors


def plot_losses(logs: dict[str, list], path: Path, title: str = "") -> None:
    """Train loss (thin) and eval loss (points) against step, one colour per run; skipped without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot", flush=True)
        return
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, rows in logs.items():
        train = [(r.step, r.loss) for r in rows if r.event == "train" and r.loss is not None]
        evals = [(r.step, r.eval_loss) for r in rows if r.event == "eval"]
        line, = ax.plot(*zip(*train, strict=True), lw=0.8, alpha=0.6, label=f"{name} train")
        if evals:
            ax.plot(*zip(*evals, strict=True), "o--", color=line.get_color(), label=f"{name} eval")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    first = [r.loss for rows in logs.values() for r in rows if r.event == "train" and r.loss is not None][:1]
    if first:  # a run that diverges (loss far above where every run starts) would flatten the others' curves
        ax.set_ylim(top=first[0] * 1.15)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=120, bbox_inches="tight")
