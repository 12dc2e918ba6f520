"""Which model a job trains, and the one interface the loop uses whichever it is.

Two paths, a closed registry:

| path  | when                                                        | module      |
| ----- | ----------------------------------------------------------- | ----------- |
| own   | model.init (llama, qwen2, qwen3), or a model.path whose     | own.py      |
|       | config.json is one of those families in a form we implement |             |
| hf    | any other model.path (transformers AutoModelForCausalLM)    | hf.py       |

Both give the same four things, so the loop reads the same for either:

    model = build_model(job, tokenizer)          # nn.Module on CPU, peft-wrapped under LoRA
    hidden = hidden_states(model, batch)         # [B, T, H] final-normed, for a data-layer batch dict
    loss = cross_entropy(hidden, head_weight(model), batch["labels"], n_items)   # engine/loss.py
    save_merged(model, folder)                   # HF folder; LoRA merged first

`model_path(job)` is the line `trainhub plan` shows. It reads config.json with the json module
only (no torch, no transformers: the hub stays light); a hub id not on disk is decided when the
engine starts, by the same rule (args.unsupported) on the config transformers reads.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from trainhub.engine.models.args import FAMILIES, unsupported

if TYPE_CHECKING:
    from torch import nn

PATHS: dict[str, tuple[str, str]] = {
    "own": ("trainhub.engine.models.own", "trainhub's own decoder (engine/models)"),
    "hf": ("trainhub.engine.models.hf", "transformers AutoModelForCausalLM"),
}
"""path name -> (module giving build/hidden/head_weight, description)."""


def choose(job, config: dict | None = None) -> tuple[str | None, str]:
    """(path, why) for the job; `config` is the model's config as a dict when the caller already has it.
    Path None: a hub model whose config.json is not on disk (only the hub side asks without one)."""
    if job.model.impl == "hf":
        return "hf", "model.impl is hf"
    if job.model.attention != "sdpa":
        if job.model.impl == "own":
            raise ValueError(f"model.attention {job.model.attention} is transformers' implementation; trainhub's own "
                             f"model runs SDPA (flash-attention's varlen kernel for packed rows): set model.attention "
                             f"sdpa, or model.impl auto or hf")
        return "hf", f"model.attention is {job.model.attention}, which transformers' model implements"
    if job.model.init is not None:
        if job.model.init.family not in FAMILIES:
            raise ValueError(f"the native engine builds {', '.join(FAMILIES)}, not {job.model.init.family}")
        return "own", f"new {job.model.init.family} from model.init"
    if config is None:
        config = _local_config(job.model.path)
        if config is None:
            return None, "config.json not on disk"
    why = unsupported(config)
    if why and job.model.impl == "own":
        raise ValueError(f"model.impl is own, but trainhub's own model cannot run this checkpoint: {why}; "
                         f"use model.impl auto or hf")
    return ("hf", why) if why else ("own", f"{config['model_type']} checkpoint")


def model_path(job) -> str:
    """One line for `trainhub plan`: which model path the job takes, and why."""
    try:
        path, why = choose(job)
    except ValueError as err:  # plan shows the rest; the engine refuses the job at start with these words
        return f"model: {err}"
    if path is None:
        return (f"model: {job.model.path} is not on disk; the engine reads its config.json at start: "
                f"{', '.join(FAMILIES)} -> {PATHS['own'][1]}, anything else -> {PATHS['hf'][1]}")
    return f"model: {PATHS[path][1]} ({why})"


def _local_config(path: str) -> dict | None:
    file = Path(path) / "config.json"
    if not file.is_file():
        return None
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"model.path: {file} is not valid JSON ({err})") from None


def _path_module(name: str):
    if name not in PATHS:
        raise ValueError(f"unknown model path {name!r}; one of {', '.join(PATHS)}")
    return importlib.import_module(PATHS[name][0])


def build_model(job, tokenizer):
    """The job's model on CPU in its dtype (peft-wrapped under LoRA); the engine's side of `choose`."""
    config = None
    if job.model.init is None:
        from trainhub.engine.models.hf_io import read_config

        config = read_config(job.model.path, job.model.trust_remote_code).to_dict()
    path, _why = choose(job, config)
    return _path_module(path).build(job, tokenizer)


def _module_of(model):
    from trainhub.engine.models.own import unwrap
    from trainhub.engine.models.transformer import CausalLM

    return _path_module("own" if isinstance(unwrap(model), CausalLM) else "hf")


def compile_model(model) -> None:
    """torch.compile the part of `model` that hidden_states runs, in place."""
    _module_of(model).compile_blocks(model)


def set_offload(model, on: bool) -> None:
    """train.activation_offload: the tensors saved for the backward wait in host memory (checkpointing.py)."""
    _module_of(model).set_offload(model, on)


def path_of(model) -> str:
    """'own' or 'hf': which path built `model`."""
    return "own" if _module_of(model).__name__.endswith(".own") else "hf"


def hidden_states(model, batch: dict):
    """Final-normed hidden states [B, T, H] for a batch dict as data/batches.py and data/packing.py make
    it (padded with a 2-D mask; packed with a 4-D bool/float mask; varlen); other keys (labels) are not read."""
    return _module_of(model).hidden(model, batch)


def head_weight(model):
    """The output projection [vocab, H] (the input embedding when tied): logits = hidden @ head_weight.T."""
    return _module_of(model).head_weight(model)


def save_merged(model, folder) -> Path:
    """`model` as an HF folder transformers loads; a LoRA model is merged first (merge_and_unload: this
    changes `model` in place, so save the adapter itself before calling this)."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    model.save_pretrained(folder, safe_serialization=True)
    return Path(folder)


def merge_onto_base(job, tokenizer, adapter: Path):
    """save_final's `merge(final)` for a QLoRA run: the adapter at `adapter` merged into the unquantized base
    weights of model.path, saved with the tokenizer."""

    def merge(final: Path) -> None:
        save_merged(load_base_with_adapter(job, adapter), final)
        tokenizer.save_pretrained(final)

    return merge


def load_base_with_adapter(job, adapter: Path) -> nn.Module:
    """The job's base model as saved (no quantization), in model.dtype, with the adapter at `adapter` loaded."""
    from trainhub.engine.model import DTYPES
    from trainhub.engine.models.hf_io import read_config

    dtype = DTYPES[job.model.dtype]
    path, _ = choose(job, read_config(job.model.path, job.model.trust_remote_code).to_dict())
    if path == "own":
        from trainhub.engine.models.own import load_hf, load_lora

        return load_lora(load_hf(job.model.path, dtype), adapter)
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(job.model.path, dtype=dtype,
                                                trust_remote_code=job.model.trust_remote_code)
    return PeftModel.from_pretrained(base, str(adapter))
