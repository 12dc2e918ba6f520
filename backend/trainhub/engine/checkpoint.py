"""Checkpoints: written whole or not at all; exact resume; keep the last N and the best.

Layout of `checkpoints/step-NNNNNNNN/` (docs/checkpoints.md):

    model.safetensors | adapter_model.safetensors   weights (HF save_pretrained: loadable as a model/adapter)
    config.json, ...                                 what save_pretrained writes beside them
    optimizer.pt      optimizer state: tensors and numbers only, read with torch.load(weights_only=True)
    rng.pt            torch CPU and CUDA generator states (tensors only, weights_only=True)
    state.json        step, tokens, data position, python/numpy RNG, loss scaler, eval bests, counters
    job.json          the resolved job, and its hash in state.json

A checkpoint is written under `.tmp-step-N`, every file fsynced, the folder renamed
into place and the parent fsynced; only then is `checkpoints/latest` (and `best`,
when this checkpoint has the lowest eval loss so far) replaced, atomically. A
process killed at any moment leaves the previous checkpoint and pointers intact.
Older checkpoints are deleted only after the new one is complete; the one `best`
names is kept beyond keep_last.

A run with a process group (ddp, fsdp2) writes its weights and optimizer through
torch.distributed.checkpoint instead, committed the same way: engine/checkpoint_dcp.py.

A checkpoint an upstream writes in a folder of its own (a Hugging Face Trainer's
`checkpoints/checkpoint-N`) is committed the same way by `commit_in_place`: state.json and
job.json join it, every file is fsynced, and only then does `latest` name it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import torch

from trainhub.export.hf import adapter_save_kwargs
from trainhub.resume import JOB, STATE, CheckpointError, pointer, read_state

OPTIMIZER, RNG = "optimizer.pt", "rng.pt"
__all__ = ["CheckpointError", "commit_checkpoint", "commit_in_place", "load_into", "restore_rng", "save_checkpoint"]


def save_checkpoint(run_dir: Path, step: int, model, optimizer, state: dict, job: dict, keep_last: int,
                    is_best: bool = False) -> Path:
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True, **adapter_save_kwargs(model))
        torch.save(optimizer.state_dict(), tmp / OPTIMIZER)
        torch.save(_torch_rng(), tmp / RNG)

    return commit_checkpoint(run_dir, step, write, {**state, **_host_rng()}, job, keep_last, is_best)


def commit_checkpoint(run_dir: Path, step: int, write: Callable[[Path], None], state: dict, job: dict,
                      keep_last: int, is_best: bool = False) -> Path:
    """The safe part of every save, whatever the backend: `write(tmp)` puts the payload in a temporary
    folder; state.json and job.json join it; then fsync, rename, pointers, retention (module docstring)."""
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = _free_name(root, f"step-{step:08d}")
    tmp = root / f".tmp-{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    _complete(tmp, step, state, job)
    os.replace(tmp, final)
    _fsync_dir(root)
    _write_atomic(root / "latest", final.name + "\n")
    if is_best:
        _write_atomic(root / "best", final.name + "\n")
    _retain(root, keep_last)
    return final


def commit_in_place(folder: Path, step: int, state: dict, job: dict) -> Path:
    """Commit a checkpoint an upstream has written in its own folder (a Trainer's checkpoint-N) as
    commit_checkpoint commits trainhub's: state.json and job.json join it, every file is fsynced, then
    `latest` names it, atomically. The upstream keeps the folder's name and its own retention
    (save_total_limit), and the folder is not renamed: the Trainer finds it by that name on resume."""
    _complete(folder, step, state, job)
    _fsync_dir(folder.parent)
    _write_atomic(folder.parent / "latest", folder.name + "\n")
    return folder


def _complete(folder: Path, step: int, state: dict, job: dict) -> None:
    """state.json and job.json beside the payload, and everything in the folder on disk."""
    (folder / STATE).write_text(json.dumps({"step": step, **state, "saved_at": time.time()}, indent=1))
    (folder / JOB).write_text(json.dumps(job, indent=2))
    _fsync_tree(folder)


def _free_name(root: Path, name: str) -> Path:
    """A checkpoint folder is never overwritten in place (the step may be saved again after resuming from
    an earlier one): a taken name gets a suffix, and `latest` names whichever was written."""
    path, k = root / name, 0
    while path.exists():
        k += 1
        path = root / f"{name}-r{k}"
    return path


def _retain(root: Path, keep_last: int) -> None:
    """Delete all but the keep_last most recently written checkpoints, never the ones `latest` and `best`
    name; leftovers of interrupted saves (.tmp-*) go too."""
    keep = {pointer(root, "latest"), pointer(root, "best")}
    done = [p for p in root.glob("step-*") if (p / STATE).is_file()]
    done.sort(key=lambda p: json.loads((p / STATE).read_text()).get("saved_at", 0.0))
    for old in done[:-keep_last]:
        if old.name not in keep:
            shutil.rmtree(old)
    for partial in root.glob(".tmp-*"):
        shutil.rmtree(partial, ignore_errors=True)


def load_into(path: Path, model, optimizer, device: torch.device) -> dict:
    """Restore weights, optimizer and RNG states from a checkpoint; returns its state.json."""
    state, _job = read_state(path)
    _load_weights(path, model)
    optimizer.load_state_dict(torch.load(path / OPTIMIZER, map_location=device, weights_only=True))
    restore_rng(path, state)
    return state


def restore_rng(path: Path, state: dict) -> None:
    """The torch generators from rng.pt and Python's and numpy's from state.json."""
    rng = torch.load(path / RNG, weights_only=True)
    torch.set_rng_state(rng["cpu"])
    if torch.cuda.is_available() and rng.get("cuda"):
        torch.cuda.set_rng_state_all(rng["cuda"])
    random.setstate((state["python_rng"][0], tuple(state["python_rng"][1]), state["python_rng"][2]))
    if state.get("numpy_rng") is not None:
        import numpy as np

        kind, keys, pos, has_gauss, cached = state["numpy_rng"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _load_weights(path: Path, model) -> None:
    from safetensors.torch import load_file

    if hasattr(model, "peft_config"):  # a LoRA adapter
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, load_file(path / "adapter_model.safetensors"))
        if result.unexpected_keys:
            raise CheckpointError(f"{path}: adapter weights do not fit the model: {result.unexpected_keys[:3]}")
        return
    index = path / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() \
        else ["model.safetensors"]
    weights: dict = {}
    for name in files:
        weights.update(load_file(path / name))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = tied_names(model)
    if unexpected or set(missing) - tied:
        raise CheckpointError(f"{path}: weights do not fit the model (missing {sorted(set(missing) - tied)[:3]}, "
                              f"unexpected {unexpected[:3]})")


def tied_names(model) -> set[str]:
    """Parameter names that share storage with another (save_pretrained writes each tensor once)."""
    seen, tied = {}, set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            tied.add(name)
            tied.add(seen[id(p)])
        seen.setdefault(id(p), name)
    return tied


def _torch_rng() -> dict:
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def _host_rng() -> dict:
    version, keys, gauss = random.getstate()
    out = {"python_rng": [version, list(keys), gauss], "numpy_rng": None}
    try:
        import numpy as np
    except ImportError:
        return out
    kind, keys_np, pos, has_gauss, cached = np.random.get_state()
    out["numpy_rng"] = [kind, keys_np.tolist(), int(pos), int(has_gauss), float(cached)]
    return out


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
