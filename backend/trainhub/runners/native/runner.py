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
from trainhub.runners.launch import module_under_torchrun

CHILD_ENV = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
"""Added to the hub's environment for the engine's process (the run's, and plan's `describe`)."""
DESCRIBE_TIMEOUT_S = 120
"""The most `plan` waits for the engine to describe the optimizer (a tiny job takes a few seconds, mostly importing
torch, and transformers for a model.path; the model is built on the meta device, so size adds little)."""


class NativeRunner:
    name = "native"
    methods = ("pretrain", "sft", "grpo")
    features = ("full", "lora", "qlora", "init-from-architecture", "bf16", "fp16", "fp32", "fp8", "grad-checkpointing",
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
            if missing_modules("torchao"):
                problems.append(Problem("adapter.type", "native trains qlora with torchao's NF4 weights; install it "
                                        "(pip install 'trainhub[qlora]'), or use adapter lora"))
            if job.model.init is not None:
                problems.append(Problem("adapter.type", "qlora adapts a pretrained model (model.path); a model "
                                        "built from model.init has no weights worth freezing in 4 bits"))
        if job.model.init is not None and job.model.init.family == "gpt2":
            problems.append(Problem("model.init.family", "native builds llama, qwen2 and qwen3 models; gpt2 trains with "
                                    "backend nanogpt"))
        if job.method.type == "grpo":
            problems += grpo_problems(job)
        kernels = getattr(job.backend, "kernels", "auto")
        if kernels in ("triton", "liger") and not host.has_gpu and os.environ.get("TRITON_INTERPRET") != "1":
            problems.append(Problem("backend.kernels", f"backend.kernels {kernels} needs a CUDA GPU; none is "
                                    "visible (use auto or none)"))
        elif kernels == "liger" and missing_modules("liger_kernel"):
            problems.append(Problem("backend.kernels", "backend.kernels liger needs Liger-Kernel: "
                                    "pip install 'trainhub[liger]'"))
        problems += distributed_problems(job, host)
        problems += trainhub_model_problems(job, host)
        problems += fp8_problems(job, host)
        problems += optim_problems(job, "native", OPTIM_TYPES, "", packages=True)
        return problems

    def plan_lines(self, job: Job, dry_run: bool = False) -> list[str]:
        """Which model implementation and loss the engine will use (read without torch: config.json only), and
        how its processes share the work."""
        from trainhub.engine.models import model_path

        kernels = getattr(job.backend, "kernels", "auto")
        what = "triton on a CUDA GPU where Triton imports, else none" if kernels == "auto" else kernels
        if job.method.type == "grpo":
            m, settings = job.method, job.method.resolved()
            knobs = ", ".join(f"{k} {v}" for k, v in settings.items())
            decode = "compiled decode step (CUDA graphs) on a GPU" if getattr(job.backend, "compile", False) else "eager"
            where = (f"in {m.reward_workers} worker processes (rewards/pool.py)" if m.reward_workers
                     else "in the training process")
            return [f"  {model_path(job)}", f"  loss: {m.algorithm}: {knobs} (engine/rl/loss.py)",
                    f"  kernels in the update's forward and backward: {what} (backend.kernels; engine/kernels); "
                    f"the sampler runs the reference ops",
                    f"  rollout: trainhub's KV-cache sampler on the training weights, {decode} (engine/rl/rollout.py)",
                    f"  rewards: {', '.join(r.function for r in m.rewards)}, scored {where}"]
        fused = "the kernels' fused loss when kernels are on, else " if kernels != "none" else ""
        loss = job.train.loss if job.train.loss != "auto" else f"auto ({fused}chunked from a 32k vocabulary, else eager)"
        d, tc = job.distributed, job.train
        memory = f"  activation checkpointing: {tc.grad_checkpointing}" + \
            (", saved activations offloaded to host memory (GPU only)" if tc.activation_offload else "") + \
            " (engine/models/checkpointing.py)"
        sdpa = getattr(job.backend, "sdpa", "auto")
        attention = ("" if sdpa == "auto" else
                     f"; attention: SDPA's {sdpa} kernel first on a GPU, where torch takes the call for it (backend.sdpa)")
        lines = [f"  {model_path(job)}", f"  loss: {loss} (engine/loss.py)",
                 f"  kernels: {what} (backend.kernels; engine/kernels){attention}", memory,
                 f"  distributed: {d.resolved}, {d.world} process(es); global batch {tc.micro_batch_size} x "
                 f"{tc.grad_accum} x {d.world} = {tc.micro_batch_size * tc.grad_accum * d.world} sequences"]
        if job.adapter.type == "qlora":
            lines.append("  qlora: linear weights as torchao NF4 (4-bit), LoRA on top (engine/models/quant.py)")
        p = job.train.precision
        if p.type == "fp8":
            lines.append(f"  precision: fp8 {p.recipe} (torchao float8), filter {p.filter}; which Linear layers "
                         f"convert is decided at start and listed in the start row's notes (engine/fp8.py)")
        if (w := tc.loss_watch) is not None:
            lines.append(f"  loss watch: {w.action} when {w.patience} rows in a row sit over {w.sigma:g} spreads above "
                         f"the median of the last {w.window} (engine/losswatch.py)")
        return lines

    def optimizer_lines(self, job: Job) -> list[str]:
        """Which parameters each optimizer steps, at which peak rate (engine/optim/describe.py)."""
        return describe_in_engine(job)

    def prepare(self, job: Job, run_dir: Path, *, dry_run: bool = False, resume: Path | None = None) -> Launch:
        """`python -m trainhub.engine ...`, through torchrun when distributed asks for several processes."""
        argv = child_argv(sys.executable, "trainhub.engine", run_dir, dry_run=dry_run, resume=resume)
        argv = module_under_torchrun(sys.executable, job.distributed, job.name, "trainhub.engine", argv[3:])
        return Launch(argv=argv, cwd=Path(run_dir), env=dict(CHILD_ENV))


def describe_in_engine(job: Job, timeout: float = DESCRIBE_TIMEOUT_S) -> list[str]:
    """The engine's own lines for the job's optimizer groups, from `python -m trainhub.engine describe` run by the
    interpreter and environment prepare() gives the run (the hub imports no torch): the resolved job goes in on
    stdin as the run's job.json holds it. Offline: plan downloads nothing, so a hub id is read from the hub cache
    only. Any failure comes back as one line saying why; plan shows the rest regardless."""
    import json
    import shlex
    import subprocess

    argv = [sys.executable, "-m", "trainhub.engine", "describe"]
    env = {**os.environ, **CHILD_ENV, "HF_HUB_OFFLINE": "1"}
    try:
        done = subprocess.run(argv, input=job.model_dump_json(), capture_output=True, text=True, timeout=timeout,
                              env=env)
    except subprocess.TimeoutExpired:
        return [f"not shown: `{shlex.join(argv)}` took over {timeout:g} s"]
    try:
        answer = json.loads((done.stdout.strip().splitlines() or [""])[-1])
    except json.JSONDecodeError:
        answer = None
    if not isinstance(answer, dict) or not ("lines" in answer or "error" in answer):  # died before answering
        err = [line for line in done.stderr.splitlines() if line.strip()]
        answer = {"error": f"`{shlex.join(argv)}` exited {done.returncode}: {err[-1] if err else 'no output'}"}
    if "lines" in answer:
        return answer["lines"]
    cached = "" if job.model.path is None or Path(job.model.path).exists() else \
        " (plan downloads nothing: a hub id is read from the local hub cache only)"
    return [f"not shown: {answer['error']}{cached}"]


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
    # what the pretrain/SFT engine builds (engine/setup.py, engine/parallelize.py) and the GRPO loop does not yet
    not_yet = [("distributed.nproc_per_node", job.distributed.world > 1, "several processes"),
               ("train.precision", job.train.precision.type == "fp8", "fp8"),
               ("adapter.type", job.adapter.type == "qlora", "qlora"),
               ("train.activation_offload", job.train.activation_offload, "activation offload"),
               ("train.loss_watch", job.train.loss_watch is not None,
                "train.loss_watch (a policy loss is no divergence signal; watch the reward rows)")]
    for key, asked, what in not_yet:
        if asked:
            problems.append(Problem(key, f"native: grpo with {what} is not supported yet (pretrain and sft have it)"))
    return problems


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


FSDP2_OPTIMIZERS = ("adamw", "muon", "lion", "schedule_free_adamw")
"""Optimizers that run on FSDP2's shards (tests/integration/test_optim_fsdp2.py, test_distributed.py): AdamW's,
Lion's and schedule-free AdamW's steps are element-wise; Muon gathers each matrix to the rank that owns it and
scatters the orthogonalised update back (engine/optim/muon.py). CAME (column factors sum over rows other ranks
hold), Prodigy (global dot products), 8-bit AdamW (bitsandbytes' kernels take plain tensors) and Sophia (its
Hessian estimate calls the model outside the sharded forward) need their own sharded update."""


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
