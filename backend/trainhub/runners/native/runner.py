"""Runner `native`: trainhub's own engine (trainhub.engine), run as `python -m trainhub.engine`, the entry
torchrun starts too (runners/base.py says why native has no child.py of its own)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from trainhub.host import Host, missing_modules
from trainhub.job import OPTIM_TYPES, Job
from trainhub.jobfile import Problem
from trainhub.runners.base import Launch, child_argv, optim_problems, trainhub_model_problems


class NativeRunner:
    name = "native"
    methods = ("pretrain", "sft")
    features = ("full", "lora", "qlora", "init-from-architecture", "bf16", "fp16", "fp32", "fp8", "grad-checkpointing",
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
            if missing_modules("torchao"):
                problems.append(Problem("adapter.type", "native trains qlora with torchao's NF4 weights; install it "
                                        "(pip install 'trainhub[qlora]'), or use adapter lora"))
            if job.model.init is not None:
                problems.append(Problem("adapter.type", "qlora adapts a pretrained model (model.path); a model "
                                        "built from model.init has no weights worth freezing in 4 bits"))
        if job.model.init is not None and job.model.init.family == "gpt2":
            problems.append(Problem("model.init.family", "native builds llama, qwen2 and qwen3 models; gpt2 trains with "
                                    "backend nanogpt"))
        kernels = getattr(job.backend, "kernels", "auto")
        if kernels in ("triton", "liger") and not host.has_gpu and os.environ.get("TRITON_INTERPRET") != "1":
            problems.append(Problem("backend.kernels", f"backend.kernels {kernels} needs a CUDA GPU; none is "
                                    "visible (use auto or none)"))
        elif kernels == "liger" and missing_modules("liger_kernel"):
            problems.append(Problem("backend.kernels", "backend.kernels liger needs Liger-Kernel: "
                                    "pip install 'trainhub[liger]'"))
        problems += trainhub_model_problems(job, host)
        problems += fp8_problems(job, host)
        problems += optim_problems(job, "native", OPTIM_TYPES, "", packages=True)
        return problems

    def plan_lines(self, job: Job, dry_run: bool = False) -> list[str]:
        """Which model implementation and loss the engine will use (read without torch: config.json only)."""
        from trainhub.engine.models import model_path

        kernels = getattr(job.backend, "kernels", "auto")
        fused = "the kernels' fused loss when kernels are on, else " if kernels != "none" else ""
        loss = job.train.loss if job.train.loss != "auto" else f"auto ({fused}chunked from a 32k vocabulary, else eager)"
        what = "triton on a CUDA GPU where Triton imports, else none" if kernels == "auto" else kernels
        tc = job.train
        memory = f"  activation checkpointing: {tc.grad_checkpointing}" + \
            (", saved activations offloaded to host memory (GPU only)" if tc.activation_offload else "") + \
            " (engine/models/checkpointing.py)"
        lines = [f"  {model_path(job)}", f"  loss: {loss} (engine/loss.py)",
                 f"  kernels: {what} (backend.kernels; engine/kernels)", memory]
        if job.adapter.type == "qlora":
            lines.append("  qlora: linear weights as torchao NF4 (4-bit), LoRA on top (engine/models/quant.py)")
        p = job.train.precision
        if p.type == "fp8":
            lines.append(f"  precision: fp8 {p.recipe} (torchao float8), filter {p.filter}; which Linear layers "
                         f"convert is decided at start and listed in the start row's notes (engine/fp8.py)")
        return lines

    def prepare(self, job: Job, run_dir: Path, *, dry_run: bool = False, resume: Path | None = None) -> Launch:
        argv = child_argv(sys.executable, "trainhub.engine", run_dir, dry_run=dry_run, resume=resume)
        return Launch(argv=argv, cwd=Path(run_dir), env={"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})


def fp8_problems(job: Job, host: Host) -> list[Problem]:
    """train.precision fp8 refused before any work: no torchao, no FP8-capable GPU (engine/precision.py's rule,
    the one the engine applies again at start with torch's facts), or no backend.compile."""
    spec = job.train.precision
    if spec.type != "fp8":
        return []
    from trainhub.engine.precision import fp8_refusal

    problems = []
    if missing_modules("torchao"):
        problems.append(Problem("train.precision", "fp8 needs the package torchao (pip install 'trainhub[fp8]')"))
    why = fp8_refusal(gpu=host.gpus[0] if host.gpus else None,
                      capability=host.capabilities[0] if host.capabilities else None,
                      compiled=getattr(job.backend, "compile", False), allow_eager=spec.allow_eager)
    if why:
        problems.append(Problem("train.precision", why))
    return problems
