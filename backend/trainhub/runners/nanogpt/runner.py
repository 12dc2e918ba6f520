"""Runner `nanogpt`: a checkout of karpathy/nanoGPT driven by a generated config file, never modified.

The hub launches `python -m trainhub.runners.nanogpt.child` (the driver), which writes the data and
the config into the run folder, runs the checkout's train.py with cwd = the checkout (through torchrun
for several GPUs), turns its stdout into metric rows, keeps its checkpoints and exports the last one as
a Hugging Face GPT-2. This module is the hub's side: what the backend can do, and the command line; it
imports no torch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from trainhub.host import Host, missing_modules
from trainhub.job import Job
from trainhub.jobfile import Problem
from trainhub.runners.base import Launch, child_argv, native_only_problems, optim_problems
from trainhub.runners.nanogpt.translate import checkout_problems, distributed_problems, processes_asked

CHECKOUT_FILES = ("train.py", "configurator.py", "model.py")


def checkout(job: Job) -> Path | None:
    """The nanoGPT checkout the job names (backend.repo, else $NANOGPT_DIR), or None."""
    repo = getattr(job.backend, "repo", None) or os.environ.get("NANOGPT_DIR")
    return Path(repo).expanduser().resolve() if repo else None


class NanoGPTRunner:
    name = "nanogpt"
    methods = ("pretrain",)
    features = ("full", "gpt2", "init-from-architecture", "continue-from-ckpt", "bf16", "fp16", "fp32",
                "compile", "ddp", "cpu", "cuda")

    def missing(self) -> list[str]:
        gone = missing_modules("torch", "numpy", "transformers", "tokenizers", "safetensors")
        return gone + ([] if os.environ.get("NANOGPT_DIR") else ["a nanoGPT checkout (backend.repo or NANOGPT_DIR)"])

    def check(self, job: Job, host: Host) -> list[Problem]:
        problems = [Problem("backend", f"nanogpt needs the Python package '{m}'")
                    for m in missing_modules("torch", "numpy", "transformers", "tokenizers", "safetensors")]
        problems += _checkout_problems(job)
        problems += _job_problems(job)
        procs = processes_asked(job)
        if procs is not None and procs > max(1, len(host.gpus)):
            key = "backend.processes" if getattr(job.backend, "processes", None) else "distributed.nproc_per_node"
            problems.append(Problem(key, f"{procs} processes need {procs} GPUs; this host has "
                                    f"{len(host.gpus) or 'none'}"))
        problems += [Problem(key, why) for key, why in distributed_problems(job)]
        return problems

    def optimizer_lines(self, job: Job) -> list[str]:
        """nanoGPT's model.py configure_optimizers: decay by dimension, one learning rate; check() refuses
        optim.lr_mult."""
        return [f"nanogpt: nanoGPT's own AdamW (model.py configure_optimizers), one learning rate (optim.lr "
                f"{job.optim.lr:g}) for every parameter, in two groups: weight_decay {job.optim.weight_decay:g} on "
                f"tensors of 2 or more dimensions (embeddings included), 0 on biases and LayerNorm gains; no per-group "
                f"multipliers"]

    def prepare(self, job: Job, run_dir: Path, *, dry_run: bool = False, resume: Path | None = None) -> Launch:
        repo = checkout(job)
        argv = child_argv(sys.executable, "trainhub.runners.nanogpt.child", run_dir, "--repo", str(repo), dry_run=dry_run,
                          resume=resume)
        return Launch(argv=argv, cwd=Path(run_dir), env={"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})


def _checkout_problems(job: Job) -> list[Problem]:
    repo = checkout(job)
    if repo is None:
        return [Problem("backend.repo", "no nanoGPT checkout: set backend.repo (or NANOGPT_DIR) to a clone of "
                                        "https://github.com/karpathy/nanoGPT")]
    lacking = [f for f in CHECKOUT_FILES if not (repo / f).is_file()]
    if lacking:
        return [Problem("backend.repo", f"{repo} is not a nanoGPT checkout: no {', '.join(lacking)}")]
    try:
        return [Problem("backend.repo", f"{repo}: {p}") for p in checkout_problems(repo)]
    except SyntaxError as err:
        return [Problem("backend.repo", f"{repo}/train.py does not parse: {err}")]


def _job_problems(job: Job) -> list[Problem]:
    """Everything in the job that nanoGPT's train.py cannot do, each named by its key."""
    p: list[Problem] = []

    def no(where: str, why: str) -> None:
        p.append(Problem(where, f"nanogpt: {why}"))

    init, tc, sched = job.model.init, job.train, job.schedule
    if job.method.type != "pretrain":
        no("method.type", f"nanoGPT trains language models on raw text only (pretrain), not {job.method.type}")
    if job.adapter.type != "full":
        no("adapter.type", f"nanoGPT trains every weight (adapter full), not {job.adapter.type}")
    if init is not None and init.family != "gpt2":
        no("model.init.family", f"nanoGPT's model is GPT-2 (family gpt2), not {init.family}")
    if init is not None and init.family == "gpt2" and init.block_size != job.data.max_length:
        no("data.max_length", f"nanoGPT trains on windows of block_size tokens: data.max_length "
                              f"({job.data.max_length}) must equal model.init.block_size ({init.block_size})")
    if job.model.path is not None and not _nanogpt_checkpoint(Path(job.model.path)):
        no("model.path", f"{job.model.path} holds no nanoGPT checkpoint (a ckpt.pt, a folder with one, or a "
                         f"nanogpt run folder); nanogpt continues only from its own checkpoints")
    if job.model.dtype != "float32":
        no("model.dtype", "nanoGPT keeps float32 weights (train.precision picks the autocast dtype)")
    if job.model.attention != "sdpa":
        no("model.attention", "nanoGPT's attention is torch's scaled_dot_product_attention (sdpa)")
    if job.model.trust_remote_code:
        no("model.trust_remote_code", "nanoGPT loads no hub model code")
    p += native_only_problems(job, "nanogpt")
    p += optim_problems(job, "nanogpt", ("adamw",), "nanoGPT's train.py builds its own AdamW")
    if job.optim.type == "adamw" and job.optim.eps != 1e-8:
        no("optim.eps", "nanoGPT's AdamW uses torch's default eps 1e-8 and has no key for it")
    if job.optim.lr_mult != type(job.optim.lr_mult)():
        no("optim.lr_mult", "nanoGPT trains every parameter at one learning rate; no per-group multipliers")
    if sched.decay == "linear":
        no("schedule.decay", "nanoGPT's schedule is cosine (or constant); no linear decay")
    if sched.decay == "constant" and sched.warmup_steps:
        no("schedule.warmup_steps", "nanoGPT's constant schedule (decay_lr False) has no warmup")
    if tc.max_steps is not None and sched.warmup_steps >= tc.max_steps and sched.decay == "cosine":
        no("schedule.warmup_steps", f"nanoGPT's cosine needs warmup ({sched.warmup_steps}) shorter than "
                                          f"train.max_steps ({tc.max_steps})")
    if tc.grad_checkpointing == "full":  # selective: native_only_problems
        no("train.grad_checkpointing", "nanoGPT has no activation checkpointing")
    if tc.max_steps is not None and tc.eval_every and tc.max_steps % tc.eval_every:
        no("train.eval_every", f"nanoGPT evaluates and saves every eval_interval iterations, so the last step "
                               f"is saved only if train.eval_every ({tc.eval_every}) divides train.max_steps "
                               f"({tc.max_steps})")
    if tc.save_every is not None and tc.save_every != tc.eval_every:
        no("train.save_every", "nanoGPT saves at every evaluation: leave train.save_every null or equal to "
                               "train.eval_every")
    if tc.on_nonfinite == "skip":
        no("train.on_nonfinite", "nanoGPT cannot skip an update; set train.on_nonfinite: stop (a non-finite "
                                 "loss then stops the run, keeping the last checkpoint)")
    if not job.data.has_eval:
        no("data.eval", "nanoGPT evaluates on val.bin from iteration 0; give data.eval or data.eval_fraction")
    if not job.data.shuffle:
        no("data.shuffle", "nanoGPT samples random windows of the token stream; it cannot read in order")
    return p


def _nanogpt_checkpoint(path: Path) -> bool:
    from trainhub.runners.nanogpt.source import find_ckpt

    return find_ckpt(path) is not None
