"""The runner contract every backend implements (DESIGN.md, "The runner contract").

    check(job, host)          -> problems: unsupported features, missing packages, bad combinations
    prepare(job, run_dir, …)  -> Launch: writes the upstream's own config, returns argv + env + cwd

The hub runs the Launch as a child process and follows run_dir/metrics.jsonl.

Every backend is one package of the same shape, `runners/<name>/`:

    runner.py     the Runner (check, prepare, plan_lines, optimizer_lines): what the hub imports; no torch,
                  no upstream
    translate.py  job -> the upstream's own config, pure (no torch, no upstream): `plan` and the tests
                  call it without the upstream installed
    child.py      the child process: `python -m trainhub.runners.<name>.child --run-dir RUN [...]`,
                  its `main` a call of trainhub.child.child_main (arguments, job, log, exit codes);
                  the upstream is imported here, inside the functions that need it
    __init__.py   a docstring only, so that `-m ...child` loads nothing heavy before the child runs

plus the backend's own helpers beside them (trl: data.py, trainer.py; nanogpt: logparse.py, ...).
The one exception is native: its child is the engine itself, `python -m trainhub.engine` (the same
entry torchrun starts on every rank), and the job is the engine's own config, so runners/native/
holds runner.py alone: a translate.py would be the identity, and a child.py that re-exported the
engine would put a second name on the process torchrun runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from trainhub.host import Host
from trainhub.job import OPTIM_PACKAGES, Job
from trainhub.jobfile import Problem


def child_argv(python: str, module: str, run_dir: Path, *extra: str, dry_run: bool = False,
               resume: Path | None = None) -> list[str]:
    """`python -m module --run-dir RUN [extra...] [--dry-run] [--resume CKPT]`: how every backend's child is
    called (trainhub.child.child_main reads it)."""
    argv = [python, "-m", module, "--run-dir", str(run_dir), *extra]
    if dry_run:
        argv.append("--dry-run")
    if resume is not None:
        argv += ["--resume", str(resume)]
    return argv


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    """The command line of the child process."""
    cwd: Path
    """Where it runs."""
    env: dict[str, str] = field(default_factory=dict)
    """Variables added to the hub's environment."""


class Runner(Protocol):
    name: str
    methods: tuple[str, ...]
    """Job methods (method.type) this backend can train."""
    features: tuple[str, ...]
    """Other things it can do, named as in the job (adapter types, precisions, ...)."""

    def missing(self) -> list[str]:
        """What must be installed before this backend can run (empty when ready)."""
        ...

    def check(self, job: Job, host: Host) -> list[Problem]: ...

    def prepare(self, job: Job, run_dir: Path, *, dry_run: bool = False, resume: Path | None = None) -> Launch:
        """`resume`: a checkpoint folder (the hub has checked it fits the job); the backend continues from it."""
        ...

    def optimizer_lines(self, job: Job) -> list[str]:
        """For `plan`: which parameters each optimizer steps at which learning rate, or, where the backend builds
        its own optimizer, one line saying what it does with parameter groups."""
        ...


def trainhub_optimizer_line(job: Job, backend: str, model: str) -> str:
    """`plan`'s optimizer line for a backend whose child builds trainhub's optimizer (runners/trl/trainer.py
    optimizer_and_schedule: engine/optim over the model it trains, as native does)."""
    mults = ", ".join(f"{role} x{mult:g}" for role, mult in job.optim.lr_mult.model_dump().items())
    return (f"{backend}: trainhub's {job.optim.type} (engine/optim), built in the child over {model}: the native "
            f"engine's role groups, each at its peak lr x optim.lr_mult ({mults}); --backend native's plan lists "
            f"their tensors")


def trainhub_model_problems(job: Job, host: Host) -> list[Problem]:
    """What the backends that train trainhub's own model (engine/model.py: native, trl) refuse alike."""
    from trainhub.host import missing_modules

    problems = []
    if job.model.attention == "flash_attention_2" and (not host.has_gpu or missing_modules("flash_attn")):
        problems.append(Problem("model.attention", "flash_attention_2 needs a GPU and the flash-attn package; "
                                "use sdpa"))
    if job.train.precision.type == "fp16" and job.model.dtype == "bfloat16":
        problems.append(Problem("train.precision", "fp16 autocast over bfloat16 weights mixes two half formats; "
                                "use precision bf16 or model.dtype float32"))
    return problems


def optim_problems(job: Job, backend: str, able: tuple[str, ...], why: str, *,
                   packages: bool = False) -> list[Problem]:
    """optim.type refused when this backend cannot run it (`why` says why, with what it can run), or, where the
    backend builds trainhub's own optimizer in this environment (`packages`), when its package is missing."""
    kind = job.optim.type
    if kind not in able:
        return [Problem("optim.type", f"{backend} cannot run optim.type {kind}: {why}")]
    if packages and kind in OPTIM_PACKAGES:
        from trainhub.host import missing_modules

        module, package = OPTIM_PACKAGES[kind]
        if missing_modules(module):
            return [Problem("optim.type", f"{backend}: optim.type {kind} needs the package {package} "
                                          f"(pip install 'trainhub[optim]')")]
    return []


def native_only_problems(job: Job, backend: str) -> list[Problem]:
    """Settings only the native engine acts on (its own model and loss seam), refused by every other backend
    when set away from auto, so no job silently means less than it says."""
    problems = []
    if job.model.impl != "auto":
        problems.append(Problem("model.impl", f"{backend} trains its own stack's model; model.impl "
                                              f"{job.model.impl} applies to backend native only"))
    if job.train.loss != "auto":
        problems.append(Problem("train.loss", f"{backend} computes the loss its own way; train.loss "
                                              f"{job.train.loss} applies to backend native only"))
    if job.train.precision.type == "fp8":
        problems.append(Problem("train.precision", f"{backend} cannot train in fp8; train.precision fp8 (torchao "
                                                   f"float8 matmuls) runs on backend native only"))
    if job.train.grad_checkpointing == "selective":
        problems.append(Problem("train.grad_checkpointing", f"{backend} cannot checkpoint selectively; "
                                f"grad_checkpointing selective applies to backend native only"))
    if job.train.activation_offload:
        also = " (unsloth's full checkpointing offloads to host memory already)" if backend == "unsloth" else ""
        problems.append(Problem("train.activation_offload", f"{backend} cannot offload activations; "
                                f"train.activation_offload applies to backend native only{also}"))
    if job.train.profile is not None:
        problems.append(Problem("train.profile", f"{backend} runs its own training loop; train.profile (a "
                                f"torch.profiler trace of chosen steps) applies to backend native only"))
    if job.train.loss_watch is not None:
        problems.append(Problem("train.loss_watch", f"{backend} runs its own training loop; train.loss_watch "
                                f"(a divergence watch on the loss) applies to backend native only"))
    return problems


def one_process_problems(job: Job, backend: str, why: str) -> list[Problem]:
    """The `distributed` section refused by a backend that runs as one process (`why`: what stands in the
    way), so nproc_per_node is never silently dropped; strategy ddp or fsdp2 in one process too."""
    d = job.distributed
    if d.world == 1 and d.strategy in ("auto", "single"):
        return []
    return [Problem("distributed", f"{backend} trains in one process (not yet several: {why}); distributed asks "
                                   f"for {d.nproc_per_node} x {d.nnodes} process(es), strategy {d.strategy}. "
                                   f"Several processes train with backend native (nanogpt for gpt2)")]


ADAPTERS = ("full", "lora", "qlora")


def adapter_problems(job: Job, backend: str, features: tuple[str, ...]) -> list[Problem]:
    """adapter.type refused when the backend's features do not name it: never a silent full fine-tune."""
    if job.adapter.type in features:
        return []
    able = [a for a in ADAPTERS if a in features]
    elsewhere = " (qlora trains on backend native, or unsloth on an NVIDIA GPU)" if job.adapter.type == "qlora" else ""
    return [Problem("adapter.type", f"{backend} cannot train adapter {job.adapter.type}; it trains "
                                    f"{', '.join(able)}{elsewhere}")]
