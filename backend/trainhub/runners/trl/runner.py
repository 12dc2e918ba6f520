"""Runner `trl`: Hugging Face TRL's trainers (SFT, DPO, ORPO, KTO, GRPO family), run as
`python -m trainhub.runners.trl.child` in the main environment (extra `trainhub[trl]`).

The job is translated into TRL's config objects by trainhub.runners.trl.translate; `plan` shows that
translation. What TRL cannot do for a job is a problem from `check`, never a silent drop.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from trainhub.host import Host, missing_modules
from trainhub.job import OPTIM_TYPES, Job
from trainhub.jobfile import Problem
from trainhub.runners.base import (
    Launch,
    adapter_problems,
    child_argv,
    native_only_problems,
    one_process_problems,
    optim_problems,
    trainhub_model_problems,
    trainhub_optimizer_line,
)

# trainhub builds the optimizer (runners/trl/trainer.py), so every one runs but SophiaG, whose Hessian step the
# Trainer has no place for; schedule-free's eval()/train() the Trainer calls itself.
TRL_OPTIMS = tuple(t for t in OPTIM_TYPES if t != "sophia")


class TrlRunner:
    name = "trl"
    methods = ("sft", "dpo", "orpo", "kto", "grpo")
    features = ("full", "lora", "init-from-architecture", "bf16", "fp16", "fp32", "grad-checkpointing", "cpu",
                "cuda", "grpo", "dr_grpo", "dapo", "gspo")

    def missing(self) -> list[str]:
        return missing_modules("torch", "transformers", "peft", "trl", "datasets")

    def check(self, job: Job, host: Host) -> list[Problem]:
        problems = [Problem("backend", f"trl needs the Python package '{m}' (pip install 'trainhub[trl]')")
                    for m in self.missing()]
        m = job.method
        if m.type not in self.methods:
            problems.append(Problem("method.type", f"trl cannot train method '{m.type}'; it trains "
                                    f"{', '.join(self.methods)}"))
        if job.data.packing:
            problems.append(Problem("data.packing", "trl does not pack with trainhub's packer (not yet); "
                                    "use backend native or data.packing: false"))
        problems += native_only_problems(job, "trl")
        problems += one_process_problems(job, "trl", "its child builds the tokenizer, commits "
                                         "checkpoints and writes final/ in every process")
        problems += adapter_problems(job, "trl", self.features)
        problems += trainhub_model_problems(job, host)
        problems += optim_problems(job, "trl", TRL_OPTIMS, "SophiaG's Hessian estimate is a step of the native loop "
                                   "that the Trainer does not run; use --backend native", packages=True)
        if m.type == "grpo":
            problems += grpo_problems(job)
        return problems

    def upstream_config(self, job: Job, dry_run: bool = False) -> dict:
        """The TRL classes and config keywords the child will use (for `trainhub plan`). Precision is
        shown for a bf16-capable GPU when the host has one, else for CPU."""
        from trainhub.host import detect
        from trainhub.runners.trl.translate import translate

        cuda = detect().has_gpu
        return translate(job, Path(job.output_dir), cuda=cuda, bf16_ok=cuda, dry_run=dry_run)

    def plan_lines(self, job: Job, dry_run: bool = False) -> list[str]:
        spec = self.upstream_config(job, dry_run)
        lines = [f"trl: {spec['module']}.{spec['trainer']} with {spec['config']}:"]
        lines += [f"  {k} = {json.dumps(v)}" for k, v in spec["args"].items()]
        o, sched = job.optim, job.schedule
        fields = ", ".join(f"{k}={v}" for k, v in o.model_dump(exclude={"type", "lr_mult"}).items())
        lines.append(f"  optimizers = trainhub {o.type}({fields}; engine/optim) with schedule warmup_steps="
                     f"{sched.warmup_steps}, decay={sched.decay}, min_lr_ratio={sched.min_lr_ratio} "
                     f"(engine/schedule.py lr_at)")
        if job.method.type == "grpo":
            workers = job.method.reward_workers
            lines.append("  reward_funcs = [" + ", ".join(r.function for r in job.method.rewards) + "]"
                         + (f", each scored in {workers} worker processes (rewards/pool.py)" if workers else ""))
        return lines

    def optimizer_lines(self, job: Job) -> list[str]:
        return [trainhub_optimizer_line(job, "trl", "transformers' model")]

    def prepare(self, job: Job, run_dir: Path, *, dry_run: bool = False, resume: Path | None = None) -> Launch:
        argv = child_argv(sys.executable, "trainhub.runners.trl.child", run_dir, dry_run=dry_run, resume=resume)
        return Launch(argv=argv, cwd=Path(run_dir), env={"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"})


def grpo_problems(job: Job) -> list[Problem]:
    """What TRL's GRPOTrainer cannot do for a GRPO job (the unsloth backend, which trains with it too,
    refuses the same)."""
    from trainhub.rewards.load import RewardError, load

    m, problems = job.method, []
    if m.dynamic_sampling:
        problems.append(Problem("method.dynamic_sampling", "TRL's GRPOTrainer has no dynamic sampling "
                                "(DAPO's refilling of groups whose rewards are all equal); set it false"))
    if job.data.overlong == "truncate":
        problems.append(Problem("data.overlong", "trl renders GRPO prompts itself, so a prompt over "
                                "data.max_length cannot be cut; use drop or error"))
    if job.data.has_eval:
        problems.append(Problem("data.eval", "trl: evaluation during GRPO is not wired yet; remove data.eval "
                                "and data.eval_fraction"))
    for i, reward in enumerate(m.rewards):
        try:
            load(reward.function, f"method.rewards[{i}]")
        except RewardError as err:
            problems.append(Problem("", str(err)))
    return problems
