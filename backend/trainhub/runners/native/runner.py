"""Runner `native`: trainhub's own engine (trainhub.engine), run as `python -m trainhub.engine`, the entry
torchrun starts too (runners/base.py says why native has no child.py of its own)."""

from __future__ import annotations

import sys
from pathlib import Path

from trainhub.host import Host, missing_modules
from trainhub.job import OPTIM_TYPES, Job
from trainhub.jobfile import Problem
from trainhub.runners.base import Launch, child_argv, optim_problems, trainhub_model_problems
from trainhub.runners.launch import module_under_torchrun


class NativeRunner:
    name = "native"
    methods = ("pretrain", "sft")
    features = ("full", "lora", "init-from-architecture", "bf16", "fp16", "fp32", "grad-checkpointing",
                "compile", "cpu", "cuda")

    def missing(self) -> list[str]:
        return missing_modules("torch", "transformers", "peft", "tokenizers", "safetensors")

    def check(self, job: Job, host: Host) -> list[Problem]:
        problems = [Problem("backend", f"native needs the Python package '{m}' (pip install trainhub)")
                    for m in self.missing()]
        if job.method.type not in self.methods:
            from trainhub.runners import RUNNERS  # the registry imports this module

            able = [name for name, r in RUNNERS.items() if job.method.type in r.methods]
            problems.append(Problem("method.type", f"native cannot train method '{job.method.type}' (yet); "
                                    f"backends that can: {', '.join(able) or 'none installed'}"))
        if job.adapter.type == "qlora":
            problems.append(Problem("adapter.type", "native cannot train qlora (4-bit base weights through "
                                    "bitsandbytes); use adapter lora, or backend unsloth on a GPU"))
        if job.model.init is not None and job.model.init.family == "gpt2":
            problems.append(Problem("model.init.family", "native builds llama, qwen2 and qwen3 models; gpt2 trains with "
                                    "backend nanogpt"))
        problems += distributed_problems(job, host)
        problems += trainhub_model_problems(job, host)
        problems += optim_problems(job, "native", OPTIM_TYPES, "", packages=True)
        return problems

    def plan_lines(self, job: Job, dry_run: bool = False) -> list[str]:
        """Which model implementation and loss the engine will use (read without torch: config.json only), and
        how its processes share the work."""
        from trainhub.engine.models import model_path

        loss = job.train.loss if job.train.loss != "auto" else "auto (chunked from a 32k vocabulary, else eager)"
        d, tc = job.distributed, job.train
        return [f"  {model_path(job)}", f"  loss: {loss} (engine/loss.py)",
                f"  distributed: {d.resolved}, {d.world} process(es); global batch {tc.micro_batch_size} x "
                f"{tc.grad_accum} x {d.world} = {tc.micro_batch_size * tc.grad_accum * d.world} sequences"]

    def prepare(self, job: Job, run_dir: Path, *, dry_run: bool = False, resume: Path | None = None) -> Launch:
        """`python -m trainhub.engine ...`, through torchrun when distributed asks for several processes."""
        argv = child_argv(sys.executable, "trainhub.engine", run_dir, dry_run=dry_run, resume=resume)
        argv = module_under_torchrun(sys.executable, job.distributed, job.name, "trainhub.engine", argv[3:])
        return Launch(argv=argv, cwd=Path(run_dir), env={"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})


FSDP2_OPTIMIZERS = ("adamw",)
"""Optimizers whose step is elementwise, so it runs on FSDP2's shards as on whole tensors. Muon
(orthogonalises whole matrices), CAME (row and column factors), Prodigy (global dot products), Sophia (its
Hessian estimate calls the model outside the sharded forward) and the others need their own sharded update."""


def distributed_problems(job: Job, host: Host) -> list[Problem]:
    """What the native engine cannot do (yet) with several processes or a process group."""
    d, problems = job.distributed, []
    strategy = d.resolved
    if strategy == "fsdp2" and job.optim.type not in FSDP2_OPTIMIZERS:
        problems.append(Problem("optim.type", f"native: optim.type {job.optim.type} does not run on FSDP2's "
                                f"shards yet; use strategy ddp, or optim {', '.join(FSDP2_OPTIMIZERS)}"))
    if strategy == "ddp" and job.optim.type == "sophia":
        problems.append(Problem("optim.type", "native: sophia's Hessian estimate runs the model outside DDP's "
                                "forward, so the ranks' estimates would differ; not yet under strategy ddp"))
    if host.has_gpu and d.nproc_per_node > len(host.gpus):
        problems.append(Problem("distributed.nproc_per_node", f"{d.nproc_per_node} processes a node need as many "
                                f"GPUs; this host has {len(host.gpus)}"))
    if d.fsdp2.cpu_offload and not host.has_gpu:
        problems.append(Problem("distributed.fsdp2.cpu_offload", "moves shards between the GPU and CPU memory; "
                                "this host has no GPU (on CPU everything is in CPU memory already)"))
    return problems
