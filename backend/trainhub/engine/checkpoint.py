"""Checkpoints: written whole or not at all, and only the last `keep_last` kept.

A checkpoint is a folder `checkpoints/step-NNNNNNNN/` holding the model (or the
LoRA adapter) as safetensors, `optimizer.pt` (tensors only: loadable with
torch.load(weights_only=True)), and `state.json` (step, tokens, data position,
job hash). It is written under a temporary name, every file fsynced, then renamed
into place; `checkpoints/latest` (a one-line file) is replaced last, atomically.
A crash mid-save leaves the previous checkpoint and pointer untouched. Old
checkpoints are removed only after the new one is complete.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch


def save_checkpoint(run_dir: Path, step: int, model, optimizer, state: dict, keep_last: int) -> Path:
    root = run_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    model.save_pretrained(tmp, safe_serialization=True)
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    (tmp / "state.json").write_text(json.dumps({"step": step, **state}, indent=1))
    _fsync_tree(tmp)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    _write_atomic(root / "latest", final.name + "\n")
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-keep_last]:
        shutil.rmtree(old)
    return final


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
