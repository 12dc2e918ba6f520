"""What to export, chat with or serve: a run folder, one of its checkpoints, or a model folder -> an HF folder.

    RUN                     RUN/final (LoRA already merged), else RUN/adapter merged into its base now
    RUN --checkpoint C      C = latest | best | step-N | a path: a full-model checkpoint (with RUN/tokenizer),
                            a LoRA checkpoint merged into its base, or a nanoGPT ckpt.pt exported as GPT-2
    FOLDER                  a Hugging Face model folder (config.json + weights + tokenizer)

A model that has to be assembled (merged, converted) is written to a temporary folder that lives as
long as the `with` block.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class SourceError(ValueError):
    pass


@dataclass
class Source:
    folder: Path
    """A Hugging Face model folder with the tokenizer beside the weights."""
    label: str
    """What it is, for messages and export.json."""
    run_dir: Path | None
    """The run folder it came from, if any (exports default to RUN/export/)."""


def is_run(path: Path) -> bool:
    return (path / "job.json").is_file() or (path / "metrics.jsonl").is_file()


@contextmanager
def resolve(target: Path, checkpoint: str | None = None) -> Iterator[Source]:
    target = Path(target)
    if not target.exists():
        raise SourceError(f"{target}: no such run folder or model folder")
    if not is_run(target):
        if checkpoint is not None:
            raise SourceError(f"--checkpoint needs a run folder; {target} is not one (no job.json)")
        if not (target / "config.json").is_file():
            raise SourceError(f"{target}: not a run folder (job.json) nor a model folder (config.json)")
        yield Source(target, str(target), None)
        return
    if checkpoint is None:
        if (target / "final" / "config.json").is_file():
            yield Source(target / "final", str(target / "final"), target)
            return
        if (target / "adapter" / "adapter_config.json").is_file():
            with tempfile.TemporaryDirectory(prefix="trainhub-merge-") as tmp:
                yield Source(_merge(target / "adapter", target, Path(tmp)), f"{target / 'adapter'} (merged)", target)
            return
        raise SourceError(f"{target} has no final model (final/ or adapter/): the run has not completed; "
                          f"name one of its checkpoints with --checkpoint latest")
    folder = _checkpoint(target, checkpoint)
    label = f"{target} checkpoint {folder.name}"
    if (folder / "ckpt.pt").is_file():
        with tempfile.TemporaryDirectory(prefix="trainhub-nanogpt-") as tmp:
            from trainhub.export.nanogpt import export_hf

            yield Source(export_hf(folder / "ckpt.pt", _tokenizer(folder, target), Path(tmp)), label, target)
        return
    if (folder / "adapter_config.json").is_file():
        with tempfile.TemporaryDirectory(prefix="trainhub-merge-") as tmp:
            yield Source(_merge(folder, target, Path(tmp)), label + " (merged)", target)
        return
    if not (folder / "config.json").is_file():
        raise SourceError(f"{folder}: holds no model (config.json, adapter_config.json or ckpt.pt)")
    if (folder / "tokenizer_config.json").is_file():
        yield Source(folder, label, target)
        return
    with tempfile.TemporaryDirectory(prefix="trainhub-ckpt-") as tmp:  # weights + the run's tokenizer
        out = Path(tmp)
        for item in folder.iterdir():
            if item.is_file() and item.suffix in (".json", ".safetensors") and item.name not in ("state.json", "job.json"):
                (out / item.name).symlink_to(item.resolve())
        _tokenizer(folder, target).save_pretrained(out)
        yield Source(out, label, target)


def _checkpoint(run_dir: Path, name: str) -> Path:
    from trainhub.resume import CheckpointError, find_checkpoint, pointer

    root = run_dir / "checkpoints"
    if name == "best":
        found = pointer(root, "best")
        if found is None:
            raise SourceError(f"{run_dir}: no best checkpoint (it is kept only when the run evaluates)")
        return root / found
    if (root / name).is_dir():
        return root / name
    try:
        return find_checkpoint(name, run_dir)
    except CheckpointError as err:
        raise SourceError(str(err)) from None


def _tokenizer(folder: Path, run_dir: Path, base: str | None = None):
    """The tokenizer the run trained with: beside the weights, the run's tokenizer/ (native), its final/,
    or (an adapter) the base model's."""
    places = [folder, run_dir / "tokenizer", run_dir / "final"] + ([Path(base)] if base else [])
    for where in places:
        if (where / "tokenizer_config.json").is_file():
            return load_tokenizer(where)
    raise SourceError(f"no tokenizer for {folder} (looked in {', '.join(str(p) for p in places)})")


def _merge(adapter: Path, run_dir: Path, out: Path) -> Path:
    """A LoRA adapter merged into its base model, written to `out`."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = json.loads((adapter / "adapter_config.json").read_text()).get("base_model_name_or_path")
    job = run_dir / "job.json"
    if job.is_file():
        base = json.loads(job.read_text())["model"].get("path") or base
    if not base:
        raise SourceError(f"{adapter}: the adapter does not name its base model")
    model = AutoModelForCausalLM.from_pretrained(base, dtype="auto")
    model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    model.save_pretrained(out, safe_serialization=True)
    _tokenizer(adapter, run_dir, base).save_pretrained(out)
    from trainhub.export.hf import make_ready

    make_ready(out)
    return out


def load_tokenizer(folder: Path):
    """The tokenizer exactly as the folder's tokenizer.json defines it.

    AutoTokenizer in transformers 5 may choose a class by the model's type instead (Qwen2Tokenizer for any
    qwen2 model), and that class adds its own default tokens when they are missing: a qwen2 model trained
    by trainhub with its own tokenizer then gains <|endoftext|> at an id past its embedding. The export
    and its verification need the tokenizer the model was trained with, so a fast tokenizer is loaded as
    saved."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if (Path(folder) / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)
