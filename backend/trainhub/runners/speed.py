"""What `backend: auto` knows about speed: tokens per second measured through `train` on a GPU class, per
backend, for one kind of training step, and the preference rule built on it.

Only measurements go in MEASURED, each with the results file that holds it (tests/unit/test_speed.py checks
the number is there). A row is the backend as auto launches it: native without backend.compile (auto has no
compile switch), each backend's defaults otherwise. Where the job's kind of step has no measurement for
native and at least one other usable backend on this GPU class, auto keeps the registry's order (native
first) and `trainhub plan` says that no measurement decided it.

The rule: among the backends whose check passes, those with a row for (GPU class, step, adapter,
checkpointing) compete; when the registry's first choice is among them and so is another, the fastest
measured one is picked. A measurement under other conditions than the job's (another sequence length,
model size) is still the best evidence there is; plan prints the row's conditions so a user can judge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from trainhub.host import Host


@dataclass(frozen=True)
class Measured:
    gpu: str
    """GPU class (gpu_class): h100, h200, a100, ..."""
    step: str
    """Kind of training step: causal-lm (pretrain and sft: the same next-token loss), or a method name."""
    adapter: str
    checkpointing: bool
    """Whether the run recomputed activations (train.grad_checkpointing not none)."""
    backend: str
    tokens_per_s: int
    source: str
    """The results file and section holding the number."""
    setup: str
    """The measured job in a few words."""


LLAMA_1B = "Llama-3.2-1B shape, bf16, 4 x 2048 tokens a step"
QWEN_GRPO = ("Qwen2.5-0.5B shape, bf16, dapo, 8 prompts x 8 completions x 256 tokens a step; completion tokens/s "
             "of the whole step (with backend.compile native makes 16,155)")
MEASURED: tuple[Measured, ...] = (
    Measured("h100", "causal-lm", "full", False, "native", 37_895,
             "research/results/native_full_ft.md (2026-12-07, own model, eager)", LLAMA_1B),
    Measured("h100", "causal-lm", "lora", False, "unsloth", 72_566,
             "research/results/unsloth.md (run5, `train --backend unsloth`)", LLAMA_1B + ", r=16 all linear"),
    Measured("h100", "causal-lm", "lora", True, "unsloth", 48_799,
             "research/results/unsloth.md (second run, `train --backend unsloth`)", LLAMA_1B + ", r=16 all linear"),
    Measured("h100", "causal-lm", "qlora", True, "unsloth", 46_359,
             "research/results/unsloth.md (second run, `train --backend unsloth`)", LLAMA_1B + ", r=16 all linear"),
    # GRPO: completion tokens/s over the whole step (rollout, rewards, update), one run of bench_grpo.py
    Measured("h100", "grpo", "full", False, "native", 2_697,
             "research/results/grpo_native.md (fourteenth session, native eager)", QWEN_GRPO),
    Measured("h100", "grpo", "full", False, "trl", 1_761,
             "research/results/grpo_native.md (fourteenth session, `train --backend trl`)", QWEN_GRPO),
)


def gpu_class(host: Host) -> str | None:
    """h100, h200, a100, l40s, ... from the first NVIDIA GPU's name; None without one or for a name not parsed."""
    if not host.gpus:
        return None
    found = re.search(r"\b([A-Z]{1,2}\d{2,3}[A-Z]?)\b", host.gpus[0])
    return found.group(1).lower() if found else None


def step_kind(job) -> str:
    return "causal-lm" if job.method.type in ("pretrain", "sft") else job.method.type


def measurements(job, host: Host) -> dict[str, Measured]:
    """backend -> its row for this job on this host."""
    gpu = gpu_class(host)
    key = (gpu, step_kind(job), job.adapter.type, job.train.grad_checkpointing != "none")
    return {m.backend: m for m in MEASURED if (m.gpu, m.step, m.adapter, m.checkpointing) == key}


def prefer(job, host: Host, usable: list[str]) -> tuple[str, str]:
    """(backend to pick among `usable` (registry order, non-empty), one line saying why)."""
    default = usable[0]
    ckpt = "with" if job.train.grad_checkpointing != "none" else "without"
    what = f"{step_kind(job)} {job.adapter.type} ({ckpt} checkpointing) on {gpu_class(host) or 'a host with no GPU class'}"
    rows = {name: m for name, m in measurements(job, host).items() if name in usable}
    if default not in rows or len(rows) < 2:
        have = ", ".join(f"{n} {m.tokens_per_s:,} tok/s" for n, m in rows.items()) or "none"
        return default, (f"no measured comparison for {what} (measured among usable backends: {have}); "
                         f"registry order (runners/speed.py)")
    best = max(rows.values(), key=lambda m: m.tokens_per_s)
    others = "; ".join(f"{m.backend} {m.tokens_per_s:,} tok/s ({m.source})" for m in rows.values() if m is not best)
    return best.backend, (f"fastest measured for {what}: {best.backend} {best.tokens_per_s:,} tok/s ({best.source}; "
                          f"{best.setup}) against {others}")
