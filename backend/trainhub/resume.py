"""Resume rules: which changes to a job a checkpoint accepts.

A checkpoint records the resolved job. Resuming with a job that differs in what
was trained — model, tokenizer, method, adapter, data, optimizer and schedule,
seed, batch shape, precision — is refused with the list of changes, unless
--resume-force. Changes that only say how long to go on and how to report and
save are allowed, and so are those of the `distributed` section that keep the global batch
(micro_batch_size x grad_accum x processes): the number of processes may change with grad_accum.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATE, JOB = "state.json", "job.json"
HF_STATE = "trainer_state.json"
"""A Hugging Face Trainer's checkpoint (`<run>/checkpoints/checkpoint-N`, written by the Trainer-based
backends) holds this instead of STATE; its job is the run folder's job.json."""


class CheckpointError(RuntimeError):
    pass

ALLOWED = (
    "name", "output_dir", "log.", "backend.compile", "backend.repo",
    "train.max_steps", "train.epochs", "train.eval_every", "train.eval_batches", "train.save_every",
    "train.keep_last", "train.log_every", "train.on_nonfinite", "train.nonfinite_limit",
    # watching and tracing, not math
    "train.loss_watch", "train.loss_watch.", "train.profile", "train.profile.",
    # memory, not math: every checkpointing mode and offload give the same gradients (tests/unit/test_checkpointing.py)
    "train.grad_checkpointing", "train.activation_offload",
    "distributed.strategy", "distributed.launcher", "distributed.rendezvous.", "distributed.fsdp2.",
    "distributed.timeout_s",
)
SAME_GLOBAL_BATCH = ("train.grad_accum", "distributed.nproc_per_node", "distributed.nnodes")
"""Changes allowed when micro_batch_size x grad_accum x processes stays the same: a run of 2 processes
resumes on 1 with twice the accumulation, and continues the same curve."""


def _global_batch(job: dict) -> int:
    train, dist = job.get("train", {}), job.get("distributed", {})
    return (train.get("micro_batch_size", 0) * train.get("grad_accum", 1) * dist.get("nproc_per_node", 1)
            * dist.get("nnodes", 1))


def job_changes(saved: dict, current: dict) -> list[str]:
    """Refused changes between the checkpoint's job and the current one, one line each."""
    a, b = _flatten(saved), _flatten(current)
    for key, value in _defaults_of_newer_keys(saved, a).items():  # e.g. the distributed section: one process
        a.setdefault(key, value)
    same_batch = _global_batch(saved) == _global_batch(current)
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<absent>") == b.get(key, "<absent>"):
            continue
        if any(key == allowed or (allowed.endswith(".") and key.startswith(allowed)) for allowed in ALLOWED):
            continue
        if same_batch and key in SAME_GLOBAL_BATCH:
            continue
        lines.append(f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}")
    return lines


def _defaults_of_newer_keys(saved: dict, flat: dict[str, Any]) -> dict[str, Any]:
    """The keys a job written by an older trainhub lacks, at the values this schema gives them by default (a
    new feature's default is the old behaviour), so that upgrading trainhub does not make every checkpoint
    refuse the same job. Keys the saved job has keep their saved values; a saved job this schema no longer
    reads fills nothing."""
    from trainhub.job import Job

    try:
        filled = _flatten(Job.model_validate(saved).model_dump(mode="json"))
    except (ValueError, OSError):
        return {}
    def under_a_saved_leaf(key: str) -> bool:  # saved `train.profile: null`, filled nothing below it
        parts = key.split(".")
        return any(".".join(parts[:i]) in flat for i in range(1, len(parts)))

    return {k: v for k, v in filled.items() if k not in flat and not under_a_saved_leaf(k)}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def find_checkpoint(where: str | Path, run_dir: Path) -> Path:
    """`latest` -> the newest complete checkpoint of run_dir; a path -> that checkpoint, or the latest of
    the run folder it names."""
    if str(where) == "latest":
        root = run_dir / "checkpoints"
        name = pointer(root, "latest") or _latest_trainer_checkpoint(root)
        if name is None:
            raise CheckpointError(f"no checkpoint to resume from in {root} (no complete checkpoint named by "
                                  f"'latest')")
        return root / name
    path = Path(where).expanduser().resolve()
    if (path / "checkpoints").is_dir():
        return find_checkpoint("latest", path)
    if not (path / STATE).is_file() and not (path / HF_STATE).is_file():
        raise CheckpointError(f"{path} is not a complete checkpoint (no {STATE} or {HF_STATE})")
    return path


def _latest_trainer_checkpoint(root: Path) -> str | None:
    steps = [int(p.name.split("-")[1]) for p in root.glob("checkpoint-*")
             if p.name.split("-")[1].isdigit() and (p / HF_STATE).is_file()]
    return f"checkpoint-{max(steps)}" if steps else None


def read_state(path: Path) -> tuple[dict, dict]:
    """(state.json, job.json) of a checkpoint."""
    try:
        if not (path / STATE).is_file():  # a Trainer checkpoint in <run>/checkpoints/
            return json.loads((path / HF_STATE).read_text()), json.loads((path.parent.parent / JOB).read_text())
        return json.loads((path / STATE).read_text()), json.loads((path / JOB).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable checkpoint ({err})") from None


def check_resume(checkpoint: Path, current_job: dict, force: bool) -> list[str]:
    """Refused changes, as lines; empty when resuming is allowed (or forced)."""
    _state, saved = read_state(checkpoint)
    changes = job_changes(saved, current_job)
    return [] if force else changes


def pointer(root: Path, name: str) -> str | None:
    """The checkpoint a pointer file (latest, best) names, if that checkpoint is complete."""
    p = root / name
    if not p.is_file():
        return None
    target = p.read_text().strip()
    return target if (root / target / STATE).is_file() else None
