"""Reading and writing Hugging Face model folders with our model: config.json + safetensors.

Load (`load_hf`): transformers' AutoConfig reads config.json (it also upgrades old spellings such
as rope_scaling to rope_parameters), hf_names.args_from_hf turns it into ModelArgs, the model is
built on the meta device (no memory, no random init: every weight is about to be replaced) and the
checkpoint's tensors are assigned into it: model.safetensors, or the shards that
model.safetensors.index.json lists. Peak memory is one copy of the weights (plus the dtype cast).

Save (`save_hf`): config.json written by the family's transformers config class, so
AutoModelForCausalLM.from_pretrained reads it as it reads its own; the weights under transformers'
names (hf_names.to_hf), the tied head once, as model.safetensors, or in shards of at most
`shard_bytes` with the index transformers reads when one file would be larger.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from trainhub.engine.models.hf_names import args_from_hf, from_hf, hf_config, to_hf
from trainhub.engine.models.transformer import CausalLM

WEIGHTS, INDEX = "model.safetensors", "model.safetensors.index.json"


def read_config(path: str | Path, trust_remote_code: bool = False):
    """The transformers config of a local folder or a hub id (from the hub cache when offline)."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def checkpoint_files(folder: Path) -> list[Path]:
    index = folder / INDEX
    if index.is_file():
        return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    if (folder / WEIGHTS).is_file():
        return [folder / WEIGHTS]
    raise FileNotFoundError(f"{folder} holds neither {WEIGHTS} nor {INDEX} (only safetensors checkpoints load)")


def local_folder(path: str | Path) -> Path:
    """A local folder as is; a hub id as its snapshot folder in the hub cache (downloaded when online)."""
    if Path(path).is_dir():
        return Path(path)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(path), allow_patterns=["*.json", "*.safetensors"]))


def load_hf(path: str | Path, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> CausalLM:
    """Our model with the weights of an HF checkpoint of family llama, qwen2 or qwen3."""
    from safetensors.torch import load_file

    folder = local_folder(path)
    args = args_from_hf(read_config(folder))
    with torch.device("meta"):
        model = CausalLM(args)
    tensors: dict[str, torch.Tensor] = {}
    for file in checkpoint_files(folder):
        tensors.update(load_file(file, device=str(device)))
    state = {name: t.to(dtype) for name, t in from_hf(tensors, args).items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.tie_weights()  # assign=True replaced the shared Parameter by two
    model.reset_buffers()
    return model


def save_hf(model: CausalLM, folder: str | Path, shard_bytes: int = 5 * 2**30) -> Path:
    """An HF folder of `model` (config.json and safetensors) that AutoModelForCausalLM loads."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    args = model.config
    tensors = {n: t.detach().contiguous() for n, t in to_hf(model.state_dict(), args).items()}
    hf_config(args, dtype=model.lm_head.weight.dtype).save_pretrained(folder)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], folder / WEIGHTS, metadata={"format": "pt"})
        return folder
    weight_map = {}
    for i, shard in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, folder / file, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, file))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (folder / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return folder
