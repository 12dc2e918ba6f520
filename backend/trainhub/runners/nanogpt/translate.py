"""The nanoGPT config file trainhub writes: the job's settings under nanoGPT's own names.

nanoGPT's train.py sets its defaults as module globals, then `configurator.py` exec's each config
file named on the command line. Only globals that exist before that point are recorded in its
`config` dict, and a `--key=value` override must have the default's exact type (`--dropout=0` fails,
0.0 passes), so every value here is written with the type of nanoGPT's default (`KEYS`), and
`checkout_problems` reads the checkout's train.py (with `ast`, never running it) to make sure a fork
still has each key with that type.

Translation (also in docs/backends.md):
  data.max_length -> block_size            train.micro_batch_size -> batch_size
  train.grad_accum x processes -> gradient_accumulation_steps (nanoGPT divides it by the world size)
  optim.lr, betas, weight_decay -> learning_rate, beta1, beta2, weight_decay
  schedule cosine -> decay_lr, warmup_iters, lr_decay_iters = max_steps, min_lr = lr x min_lr_ratio
  schedule constant (no warmup) -> decay_lr False      train.grad_clip (null -> 0.0) -> grad_clip
  train.eval_every (null: max_steps) -> eval_interval  train.eval_batches -> eval_iters
  train.log_every -> log_interval          run folder -> out_dir       data folder -> dataset
  max_steps -> max_iters (see `max_iters`) precision -> dtype          backend.compile -> compile
`dataset` is an absolute path: train.py reads os.path.join('data', dataset), and os.path.join drops
everything before an absolute component, so the data stays in the run folder and the checkout is
never written to.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path

from trainhub.engine.precision import DTYPES, choose
from trainhub.engine.schedule import total_steps
from trainhub.job import Job

# Every key trainhub writes, with the type of nanoGPT's default (karpathy/nanoGPT@3adf61e train.py).
KEYS: dict[str, type] = {
    "out_dir": str, "eval_interval": int, "log_interval": int, "eval_iters": int, "eval_only": bool,
    "always_save_checkpoint": bool, "init_from": str, "wandb_log": bool, "dataset": str,
    "gradient_accumulation_steps": int, "batch_size": int, "block_size": int, "n_layer": int, "n_head": int,
    "n_embd": int, "dropout": float, "bias": bool, "learning_rate": float, "max_iters": int,
    "weight_decay": float, "beta1": float, "beta2": float, "grad_clip": float, "decay_lr": bool,
    "warmup_iters": int, "lr_decay_iters": int, "min_lr": float, "backend": str, "device": str, "dtype": str,
    "compile": bool,
}


@dataclass(frozen=True)
class Facts:
    """What the config depends on beyond the job: the host, the data written, where the model comes from."""

    run_dir: Path
    data_dir: Path
    device: str
    """'cuda' or 'cpu'."""
    bf16: bool
    """The GPU supports bf16."""
    processes: int
    train_tokens: int
    val_tokens: int
    init_from: str = "scratch"
    """'scratch' (model.init) or 'resume' (a checkpoint copied into the run folder)."""
    model_args: dict | None = None
    """The architecture of a checkpoint being continued (nanoGPT takes it from the checkpoint)."""
    dry_run: bool = False
    start_step: int = 0
    """The iteration a resumed run starts at (its checkpoint's step)."""


def compile_on(job: Job) -> bool:
    """backend.compile; a job with `backend: auto` gets nanoGPT's default (on)."""
    return bool(getattr(job.backend, "compile", True))


def max_steps(job: Job, facts: Facts) -> int:
    """The run's optimizer steps, counted as for every backend (engine/schedule.py total_steps) over the
    windows of data.max_length tokens each process reads from the train tokens."""
    return total_steps(job, facts.train_tokens // (job.data.max_length * facts.processes))


def max_iters(steps: int, dry_run: bool, start: int = 0) -> int:
    """nanoGPT runs iterations 0..max_iters and saves at the top of an iteration, before its step; so
    max_iters = steps makes the save at iteration `steps` hold exactly `steps` updates. It then runs
    that iteration too (one step more, never saved, not logged). A dry run is its first iteration only."""
    return start if dry_run else steps


def precision(job: Job, facts: Facts) -> str:
    """bf16, fp16 or fp32, by the rule every backend uses (engine/precision.py); a CPU runs float32."""
    return choose(job.train.precision.type, cuda=facts.device == "cuda", bf16_ok=facts.bf16)


def settings(job: Job, facts: Facts) -> dict:
    """The config values, each typed as nanoGPT's default."""
    tc, opt = job.train, job.optim
    steps = max_steps(job, facts)
    eval_interval = tc.eval_every or steps
    if steps % eval_interval:
        raise ValueError(f"nanoGPT evaluates and saves every eval_interval iterations: train.eval_every "
                         f"({eval_interval}) must divide the {steps} steps, so the last step is saved")
    block = job.data.max_length
    eval_iters = tc.eval_batches or max(1, facts.val_tokens // (tc.micro_batch_size * block))
    arch = facts.model_args if facts.model_args is not None else job.model.init.model_dump()
    out = {
        "out_dir": str(facts.run_dir), "eval_interval": eval_interval, "log_interval": tc.log_every,
        "eval_iters": 1 if facts.dry_run else eval_iters, "eval_only": False,
        # always: the save at the last iteration is the one exported, whatever its val loss
        "always_save_checkpoint": True, "init_from": facts.init_from, "wandb_log": False,
        "dataset": str(facts.data_dir), "gradient_accumulation_steps": tc.grad_accum * facts.processes,
        "batch_size": tc.micro_batch_size, "block_size": block, "n_layer": arch["n_layer"],
        "n_head": arch["n_head"], "n_embd": arch["n_embd"], "dropout": arch["dropout"], "bias": arch["bias"],
        "learning_rate": opt.lr, "max_iters": max_iters(steps, facts.dry_run, facts.start_step), "weight_decay": opt.weight_decay,
        "beta1": opt.betas[0], "beta2": opt.betas[1], "grad_clip": tc.grad_clip or 0.0,
        "decay_lr": job.schedule.decay == "cosine", "warmup_iters": job.schedule.warmup_steps,
        "lr_decay_iters": steps, "min_lr": opt.lr * job.schedule.min_lr_ratio,
        "backend": "nccl" if facts.device == "cuda" else "gloo", "device": facts.device,
        "dtype": DTYPES[precision(job, facts)], "compile": compile_on(job) and facts.device == "cuda",
    }
    return {k: KEYS[k](v) for k, v in out.items()}


def render(values: dict, header: list[str]) -> str:
    lines = [f"# {h}" for h in header] + [""]
    lines += [f"{key} = {value!r}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def lr_at(it: int, s: dict) -> float:
    """nanoGPT's learning rate at iteration `it` (its get_lr: linear warmup, cosine to min_lr), from the
    settings written; nanoGPT does not print it."""
    if not s["decay_lr"]:
        return s["learning_rate"]
    if it < s["warmup_iters"]:
        return s["learning_rate"] * (it + 1) / (s["warmup_iters"] + 1)
    if it > s["lr_decay_iters"]:
        return s["min_lr"]
    ratio = (it - s["warmup_iters"]) / (s["lr_decay_iters"] - s["warmup_iters"])
    return s["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (s["learning_rate"] - s["min_lr"])


def processes_asked(job) -> int | None:
    """The processes the job asks nanoGPT for: backend.processes, else distributed.nproc_per_node when above
    1 (torchrun --standalone --nproc_per_node N; nanoGPT's train.py runs DDP under torchrun); None: every
    visible GPU (CPU: 1)."""
    procs = getattr(job.backend, "processes", None)
    if procs is None and job.distributed.nproc_per_node > 1:
        return job.distributed.nproc_per_node
    return procs


def distributed_problems(job) -> list[tuple[str, str]]:
    """(key, why) for what nanoGPT's DDP cannot take from the `distributed` section."""
    d, out = job.distributed, []
    procs = getattr(job.backend, "processes", None)
    if procs is not None and d.nproc_per_node > 1 and procs != d.nproc_per_node:
        out.append(("distributed.nproc_per_node", f"nanogpt: backend.processes {procs} and "
                                                  f"distributed.nproc_per_node {d.nproc_per_node} disagree; set one"))
    if d.strategy == "fsdp2":
        out.append(("distributed.strategy", "nanogpt: nanoGPT's train.py trains with DDP; fsdp2 is backend native's"))
    if d.nnodes > 1:
        out.append(("distributed.nnodes", "nanogpt: trainhub starts nanoGPT on one node (not yet several)"))
    return out


def checkout_defaults(repo: Path) -> dict[str, type]:
    """{name: type} of the literal settings train.py defines before it runs configurator.py."""
    tree = ast.parse((repo / "train.py").read_text(), filename=str(repo / "train.py"))
    found: dict[str, type] = {}
    for node in tree.body:
        if isinstance(node, ast.Expr) and "configurator" in ast.unparse(node):
            break
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            kind = _literal_type(node.value)
            if kind is not None:
                found.setdefault(node.targets[0].id, kind)
    return found


def _literal_type(node: ast.AST) -> type | None:
    if isinstance(node, ast.Constant):
        return type(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant):
        return type(node.operand.value)
    if isinstance(node, ast.BinOp):  # gradient_accumulation_steps = 5 * 8
        a, b = _literal_type(node.left), _literal_type(node.right)
        if a in (int, float) and b in (int, float):
            return int if a is b is int and not isinstance(node.op, ast.Div) else float
        return None
    if isinstance(node, ast.IfExp):  # dtype = 'bfloat16' if ... else 'float16'
        a, b = _literal_type(node.body), _literal_type(node.orelse)
        return a if a is b else None
    return None


def checkout_problems(repo: Path) -> list[str]:
    """Keys trainhub writes that the checkout's train.py lacks, or defines with another type."""
    defaults = checkout_defaults(repo)
    out = []
    for key, kind in KEYS.items():
        if key not in defaults:
            out.append(f"its train.py has no setting '{key}', which trainhub writes")
        elif defaults[key] is not kind:
            out.append(f"its train.py defines '{key}' as {defaults[key].__name__}, trainhub writes {kind.__name__}")
    return out


def param_counts(arch: dict, vocab: int) -> tuple[int, int]:
    """(parameters, matmul parameters) of nanoGPT's GPT: the head is tied to the token embedding, so it
    counts once; the position embedding is a lookup, so the FLOPs count (nanoGPT's get_num_params, and
    trainhub.metrics.flops's rule) leaves it out."""
    c, layers, bias = arch["n_embd"], arch["n_layer"], bool(arch["bias"])
    per_layer = 12 * c * c + 2 * c + (11 * c if bias else 0)  # attn 4c^2 + mlp 8c^2; 2 LayerNorms; biases
    total = vocab * c + arch["block_size"] * c + layers * per_layer + c + (c if bias else 0)
    return total, total - arch["block_size"] * c
