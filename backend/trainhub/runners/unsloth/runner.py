"""Runner `unsloth`: Unsloth's FastLanguageModel + TRL's trainers, in Unsloth's own environment, on one GPU.

Unsloth pins its own transformers, trl and datasets (unsloth 2026.10.9: transformers <= 5.17.0,
trl <= 1.15.0, datasets < 5), so it runs in an environment of its own (`trainhub env setup
unsloth`, trainhub.envs) as the child `python -m trainhub.runners.unsloth.child`. This module is
the hub's side: what the backend can do, the check, the plan and the launch. The translation of a
job into Unsloth's two calls and the trainer's config is translate.py.

Unsloth writes generated trainer sources to ./unsloth_compiled_cache unless told otherwise: the
child gets UNSLOTH_COMPILE_LOCATION inside the run folder, and runs in the run folder. With a
local model the child runs offline (HF_HUB_OFFLINE and friends), so nothing reaches for the hub.
"""

from __future__ import annotations

from pathlib import Path

from trainhub.host import Host, detect
from trainhub.job import Job
from trainhub.jobfile import Problem
from trainhub.runners.base import (
    Launch,
    child_argv,
    native_only_problems,
    one_process_problems,
    optim_problems,
    trainhub_optimizer_line,
)
from trainhub.runners.unsloth.translate import load_args, notes_for, peft_args

NO_GPU = "unsloth needs an NVIDIA, AMD or Intel GPU; none found — backends native or trl run here"
COMPILE_CACHE = "unsloth_compiled_cache"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


class UnslothRunner:
    name = "unsloth"
    methods = ("sft", "dpo", "orpo", "kto", "grpo")
    features = ("lora", "qlora", "full", "bf16", "fp16", "grad-checkpointing", "cuda")

    def missing(self) -> list[str]:
        from trainhub import envs

        out = [] if detect().has_unsloth_gpu else ["a GPU"]
        if envs.python_of(self.name) is None:
            out.append(f"its environment ({envs.setup_command(self.name)})")
        return out

    def check(self, job: Job, host: Host) -> list[Problem]:
        if not host.has_unsloth_gpu:  # before anything else: nothing below matters on this machine
            return [Problem("backend", NO_GPU)]
        from trainhub import envs

        problems = []
        if envs.python_of(self.name) is None:
            problems.append(Problem("backend", f"unsloth's environment is not set up: run "
                                               f"`{envs.setup_command(self.name)}` ({envs.spec_for(self.name).notes})"))
        if job.method.type not in self.methods:
            problems.append(Problem("method.type", f"unsloth cannot train method '{job.method.type}' yet; "
                                                   f"it trains {', '.join(self.methods)}"))
        if job.model.path is None:
            problems.append(Problem("model.init", "unsloth loads a saved model (model.path); building one from "
                                                  "model.init is not done here yet: use backend native"))
        if job.model.attention != "sdpa":
            problems.append(Problem("model.attention", f"unsloth runs its own attention kernels; "
                                                       f"'{job.model.attention}' cannot be chosen (leave sdpa)"))
        problems += native_only_problems(job, "unsloth")
        problems += one_process_problems(job, "unsloth", "Unsloth's open-source release "
                                         "trains on one GPU")
        problems += optim_problems(job, "unsloth", ("adamw", "muon", "adamw8bit"), "its environment holds torch and "
                                   "bitsandbytes, not pytorch-optimizer, prodigyopt or schedulefree, and sophia needs the "
                                   "native loop's Hessian step; use adamw, muon or adamw8bit, or --backend trl or native")
        if job.train.precision.type == "fp32":
            problems.append(Problem("train.precision", "unsloth trains in bf16 or fp16 (or auto); fp32 is not "
                                                       "offered"))
        if job.method.type == "grpo":
            from trainhub.runners.trl.runner import grpo_problems

            problems += grpo_problems(job)  # the same GRPO translation, the same limits
        if job.data.packing:
            problems.append(Problem("data.packing", "unsloth: packing is not wired yet; use backend native"))
        return problems

    def plan_lines(self, job: Job, dry_run: bool = False) -> list[str]:
        """What the child will call: Unsloth's two calls and the TRL trainer with every config keyword."""
        import json

        from trainhub.engine.precision import choose
        from trainhub.runners.unsloth.translate import unsloth_spec

        # as the child decides it (unsloth/child.py) on a GPU with bf16
        precision = choose(job.train.precision.type, cuda=True, bf16_ok=True, half_only=True)
        spec = unsloth_spec(job, Path(job.output_dir), precision, dry_run=dry_run)
        lines = ["unsloth: FastLanguageModel.from_pretrained(" + _kwargs(load_args(job)) + ")"]
        lora = peft_args(job)
        if lora is not None:
            lines.append("unsloth: FastLanguageModel.get_peft_model(model, " + _kwargs(lora) + ")")
        lines.append(f"unsloth: {spec['module']}.{spec['trainer']} (as patched by Unsloth) with {spec['config']}:")
        lines += [f"  {k} = {json.dumps(v)}" for k, v in spec["args"].items()]
        lines += [f"note: {n}" for n in notes_for(job)]
        return lines

    def optimizer_lines(self, job: Job) -> list[str]:
        return [trainhub_optimizer_line(job, "unsloth", "Unsloth's model")]

    def prepare(self, job: Job, run_dir: Path, *, dry_run: bool = False, resume: Path | None = None) -> Launch:
        from trainhub import envs

        python = envs.python_of(self.name)
        argv = child_argv(str(python or "python"), "trainhub.runners.unsloth.child", run_dir, dry_run=dry_run,
                          resume=resume)
        env = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false",
               "UNSLOTH_COMPILE_LOCATION": str(Path(run_dir) / COMPILE_CACHE), **envs.child_env(self.name)}
        if model_is_local(job):
            env.update(OFFLINE)
        return Launch(argv=argv, cwd=Path(run_dir), env=env)


def _kwargs(args: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def model_is_local(job: Job) -> bool:
    """jobfile.resolve made every local model path absolute; anything else is a hub id."""
    return job.model.path is not None and Path(job.model.path).is_absolute()
