"""Runner `native`: trainhub's own engine (trainhub.engine), run as `python -m trainhub.engine`, the entry
torchrun starts too (runners/base.py says why native has no child.py of its own)."""

from __future__ import annotations

import sys
from pathlib import Path

from trainhub.host import Host, missing_modules
from trainhub.job import OPTIM_TYPES, Job
from trainhub.jobfile import Problem
from trainhub.runners.base import Launch, child_argv, optim_problems, trainhub_model_problems


class NativeRunner:
    name = "native"
    methods = ("pretrain", "sft")
    features = ("full", "lora", "qlora", "init-from-architecture", "bf16", "fp16", "fp32", "grad-checkpointing",
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
        problems += trainhub_model_problems(job, host)
        problems += optim_problems(job, "native", OPTIM_TYPES, "", packages=True)
        return problems

    def plan_lines(self, job: Job, dry_run: bool = False) -> list[str]:
        """Which model implementation and loss the engine will use (read without torch: config.json only)."""
        from trainhub.engine.models import model_path

        loss = job.train.loss if job.train.loss != "auto" else "auto (chunked from a 32k vocabulary, else eager)"
        tc = job.train
        memory = f"  activation checkpointing: {tc.grad_checkpointing}" + \
            (", saved activations offloaded to host memory (GPU only)" if tc.activation_offload else "") + \
            " (engine/models/checkpointing.py)"
        lines = [f"  {model_path(job)}", f"  loss: {loss} (engine/loss.py)", memory]
        if job.adapter.type == "qlora":
            lines.append("  qlora: linear weights as torchao NF4 (4-bit), LoRA on top (engine/models/quant.py)")
        return lines

    def prepare(self, job: Job, run_dir: Path, *, dry_run: bool = False, resume: Path | None = None) -> Launch:
        argv = child_argv(sys.executable, "trainhub.engine", run_dir, dry_run=dry_run, resume=resume)
        return Launch(argv=argv, cwd=Path(run_dir), env={"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})
