"""Runner `unsloth`: Unsloth's FastLanguageModel + TRL's trainers, in Unsloth's own environment, on one GPU.

Unsloth pins its own transformers, trl and datasets (unsloth 2026.10.9: transformers <= 5.17.0,
trl <= 1.15.0, datasets < 5), so it runs in an environment of its own (`trainhub env setup
unsloth`, trainhub.envs) as the child `python -m trainhub.runners.unsloth_child`. This module is
the hub's side: what the backend can do, the check, the launch, and the translation of a job
into Unsloth's two calls, kept here as plain dicts so that they are tested without a GPU:

    job                         FastLanguageModel.from_pretrained        get_peft_model
    model.path                  model_name (use_exact_model_name=True)
    data.max_length             max_seq_length (GRPO: + method.max_new_tokens, the longest
                                prompt + completion the model sees)      max_seq_length
    train.precision             dtype (bf16 -> bfloat16, fp16 -> float16, auto -> Unsloth's pick)
    adapter lora                load_in_16bit=True                       r, lora_alpha, lora_dropout,
    adapter qlora               load_in_4bit=True (NF4, bitsandbytes)    target_modules, bias="none"
    adapter full                full_finetuning=True                     (not called)
    train.grad_checkpointing    use_gradient_checkpointing="unsloth" (else False), both calls
    seed                        random_state                             random_state

The trainer (SFT, DPO, ORPO, KTO, GRPO) and its configuration are the trl backend's translation
(trainhub.trl_child.translate), with Unsloth's differences: trainhub.runners.unsloth_trainer.

Unsloth writes generated trainer sources to ./unsloth_compiled_cache unless told otherwise: the
child gets UNSLOTH_COMPILE_LOCATION inside the run folder, and runs in the run folder. With a
local model the child runs offline (HF_HUB_OFFLINE and friends), so nothing reaches for the hub.
"""

from __future__ import annotations

from pathlib import Path

from trainhub.host import Host, detect
from trainhub.job import Job
from trainhub.jobfile import Problem
from trainhub.runners.base import Launch, child_argv, optim_problems

NO_GPU = "unsloth needs an NVIDIA, AMD or Intel GPU; none found — backends native or trl run here"
COMPILE_CACHE = "unsloth_compiled_cache"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
DTYPES = {"bf16": "bfloat16", "fp16": "float16", "auto": None}


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
        problems += optim_problems(job, "unsloth", ("adamw", "muon", "adamw8bit"), "its environment holds torch and "
                                   "bitsandbytes, not pytorch-optimizer, prodigyopt or schedulefree, and sophia needs the "
                                   "native loop's Hessian step; use adamw, muon or adamw8bit, or --backend trl or native")
        if job.train.precision.type == "fp32":
            problems.append(Problem("train.precision", "unsloth trains in bf16 or fp16 (or auto); fp32 is not "
                                                       "offered"))
        if job.method.type == "grpo":
            from trainhub.runners.trl import TrlRunner

            problems += TrlRunner()._check_grpo(job)  # the same GRPO translation, the same limits
        if job.data.packing:
            problems.append(Problem("data.packing", "unsloth: packing is not wired yet; use backend native"))
        return problems

    def plan_lines(self, job: Job, dry_run: bool = False) -> list[str]:
        """What the child will call: Unsloth's two calls and the TRL trainer with every config keyword."""
        import json

        from trainhub.runners.unsloth_trainer import unsloth_spec

        precision = "fp16" if job.train.precision.type == "fp16" else "bf16"
        spec = unsloth_spec(job, Path(job.output_dir), precision, dry_run=dry_run)
        lines = ["unsloth: FastLanguageModel.from_pretrained(" + _kwargs(load_args(job)) + ")"]
        lora = peft_args(job)
        if lora is not None:
            lines.append("unsloth: FastLanguageModel.get_peft_model(model, " + _kwargs(lora) + ")")
        lines.append(f"unsloth: {spec['module']}.{spec['trainer']} (as patched by Unsloth) with {spec['config']}:")
        lines += [f"  {k} = {json.dumps(v)}" for k, v in spec["args"].items()]
        lines += [f"note: {n}" for n in notes_for(job)]
        return lines

    def prepare(self, job: Job, run_dir: Path, *, dry_run: bool = False, resume: Path | None = None) -> Launch:
        from trainhub import envs

        python = envs.python_of(self.name)
        argv = child_argv(str(python or "python"), "trainhub.runners.unsloth_child", run_dir, dry_run=dry_run,
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


# ----------------------------------------------------------------------------- translation


def gradient_checkpointing(job: Job) -> str | bool:
    """Unsloth's own offloaded checkpointing when the job asks for checkpointing, else none."""
    return "unsloth" if job.train.grad_checkpointing else False


def max_seq_length(job: Job) -> int:
    """The longest sequence the model sees. GRPO trains on prompt + completion: data.max_length bounds the
    prompt, method.max_new_tokens the completion. Unsloth's forward cuts input_ids to max_seq_length without
    a word (unsloth 2026.10.9, models/llama.py), so with the prompt bound alone a long completion lost its
    tail, the log-probability gather indexed past the logits, and the GRPO benchmark ended in a device-side
    assert on the GPU machine (2026-11-22)."""
    return job.data.max_length + (job.method.max_new_tokens if job.method.type == "grpo" else 0)


def load_args(job: Job) -> dict:
    """Keyword arguments of FastLanguageModel.from_pretrained (dtype as a name; the child maps it to torch)."""
    kind = job.adapter.type
    return {
        "model_name": job.model.path,
        "max_seq_length": max_seq_length(job),
        "dtype": DTYPES[job.train.precision.type],
        "load_in_4bit": kind == "qlora",
        "load_in_8bit": False,
        "load_in_16bit": kind == "lora",
        "full_finetuning": kind == "full",
        "use_gradient_checkpointing": gradient_checkpointing(job),
        "trust_remote_code": job.model.trust_remote_code,
        "use_exact_model_name": True,  # never swap the named model for a pre-quantized unsloth/* mirror
        "random_state": job.seed,
    }


def peft_args(job: Job) -> dict | None:
    """Keyword arguments of FastLanguageModel.get_peft_model, or None for a full fine-tune."""
    adapter = job.adapter
    if adapter.type == "full":
        return None
    return {
        "r": adapter.rank,
        "lora_alpha": adapter.alpha,
        "lora_dropout": adapter.dropout,
        "target_modules": adapter.targets,  # "all-linear" is understood by Unsloth (and peft) as is
        "bias": "none",
        "use_gradient_checkpointing": gradient_checkpointing(job),
        "random_state": job.seed,
        "use_rslora": False,
        "max_seq_length": max_seq_length(job),
    }


def notes_for(job: Job) -> list[str]:
    """Plain statements about how Unsloth reads this job, for the start row."""
    notes = []
    weights = {"bf16": "bfloat16", "fp16": "float16"}.get(job.train.precision.type, "bfloat16 where supported")
    if job.adapter.type == "qlora":
        notes.append(f"unsloth: base weights in 4-bit NF4 (bitsandbytes), adapters and compute in {weights}")
    elif job.model.dtype == "float32":
        notes.append(f"unsloth: weights are held in {weights}, not float32 (model.dtype float32 means fp32 "
                     f"master weights on native)")
    return notes
