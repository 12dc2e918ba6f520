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
    methods = ("pretrain", "sft", "grpo")
    features = ("full", "lora", "init-from-architecture", "bf16", "fp16", "fp32", "grad-checkpointing",
                "compile", "cpu", "cuda", "grpo", "dr_grpo", "dapo", "gspo")

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
        if job.method.type == "grpo":
            problems += grpo_problems(job)
        problems += trainhub_model_problems(job, host)
        problems += optim_problems(job, "native", OPTIM_TYPES, "", packages=True)
        return problems

    def plan_lines(self, job: Job, dry_run: bool = False) -> list[str]:
        """Which model implementation and loss the engine will use (read without torch: config.json only)."""
        from trainhub.engine.models import model_path

        if job.method.type == "grpo":
            m, settings = job.method, job.method.resolved()
            knobs = ", ".join(f"{k} {v}" for k, v in settings.items())
            decode = "compiled decode step (CUDA graphs) on a GPU" if getattr(job.backend, "compile", False) else "eager"
            return [f"  {model_path(job)}", f"  loss: {m.algorithm}: {knobs} (engine/rl/loss.py)",
                    f"  rollout: trainhub's KV-cache sampler on the training weights, {decode} (engine/rl/rollout.py)"]
        loss = job.train.loss if job.train.loss != "auto" else "auto (chunked from a 32k vocabulary, else eager)"
        return [f"  {model_path(job)}", f"  loss: {loss} (engine/loss.py)"]

    def prepare(self, job: Job, run_dir: Path, *, dry_run: bool = False, resume: Path | None = None) -> Launch:
        argv = child_argv(sys.executable, "trainhub.engine", run_dir, dry_run=dry_run, resume=resume)
        return Launch(argv=argv, cwd=Path(run_dir), env={"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})


def grpo_problems(job: Job) -> list[Problem]:
    """What the native GRPO loop (engine/rl/train.py) cannot do yet, and the rewards checked by loading them."""
    from trainhub.engine.models import choose
    from trainhub.rewards.load import RewardError, load

    m, problems = job.method, []
    if job.data.overlong == "truncate":
        problems.append(Problem("data.overlong", "native samples from whole prompts, so a prompt over "
                                "data.max_length cannot be cut; use drop or error"))
    if job.data.has_eval:
        problems.append(Problem("data.eval", "native: evaluation during GRPO is not wired yet; remove data.eval "
                                "and data.eval_fraction"))
    if job.train.loss != "auto":
        problems.append(Problem("train.loss", "train.loss picks the cross-entropy of pretrain and sft; a grpo job's "
                                "loss is method.algorithm's: leave train.loss auto"))
    if job.train.precision.type == "fp16":
        problems.append(Problem("train.precision", "native: grpo with fp16 loss scaling is not supported yet; "
                                "use bf16 or fp32"))
    try:
        path, why = choose(job)
    except ValueError:
        path, why = None, ""  # trainhub_model_problems names it
    if path == "hf":
        problems.append(Problem("model", f"native samples GRPO rollouts with trainhub's own decoder (llama, qwen2, "
                                f"qwen3) only, and this model takes the transformers path ({why}); use backend trl"))
    for i, reward in enumerate(m.rewards):
        try:
            load(reward.function, f"method.rewards[{i}]")
        except RewardError as err:
            problems.append(Problem("", str(err)))
    return problems
