"""Where a nanoGPT checkpoint and its tokenizer are, for `model.path` (continuing a checkpoint).

model.path may name ckpt.pt itself, a folder holding one (nanoGPT's out_dir, or a trainhub checkpoint
folder `checkpoints/step-N`), or a nanogpt run folder (its `checkpoints/latest`). nanoGPT stores no
tokenizer, so one must sit beside the checkpoint: a `tokenizer/` folder or tokenizer files in the same
folder, or the run folder's `tokenizer/`.
"""

from __future__ import annotations

from pathlib import Path

from trainhub.resume import pointer

CKPT = "ckpt.pt"


def find_ckpt(path: Path) -> Path | None:
    path = Path(path)
    if path.is_file():
        return path
    if (path / CKPT).is_file():
        return path / CKPT
    latest = pointer(path / "checkpoints", "latest")
    if latest and (path / "checkpoints" / latest / CKPT).is_file():
        return path / "checkpoints" / latest / CKPT
    return None


def find_tokenizer(ckpt: Path) -> Path | None:
    folder = ckpt.parent
    for candidate in (folder / "tokenizer", folder, folder.parent.parent / "tokenizer"):
        if (candidate / "tokenizer_config.json").is_file() or (candidate / "tokenizer.json").is_file():
            return candidate
    return None
