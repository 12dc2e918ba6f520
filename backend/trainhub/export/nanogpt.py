"""nanoGPT's `ckpt.pt` -> a Hugging Face `GPT2LMHeadModel` folder (safetensors + config + tokenizer).

What nanoGPT saves (train.py): a dict {model, optimizer, model_args, iter_num, best_val_loss, config}:
tensors, the optimizer's state dict, and dicts of ints, floats, bools and strings (best_val_loss is a
0-d tensor once an evaluation ran). Nothing in it needs unpickling of arbitrary classes, so it is read
with `torch.load(weights_only=True)`: a checkpoint that tried to run code fails to load instead. mmap
keeps a large file out of memory until a tensor is touched.

The model's parameter names are HF GPT-2's names (nanoGPT took them from there), with two differences:
  - nanoGPT's c_attn, c_proj and c_fc are nn.Linear ([out, in]); HF GPT-2 keeps them as Conv1D
    ([in, out]): those four weights are transposed;
  - a checkpoint saved from a compiled model prefixes every key with `_orig_mod.` (and one from a DDP
    module with `module.`): the prefixes are removed, as nanoGPT's own resume does.
`bias: False` checkpoints have no biases; HF GPT-2 always has them, so they are zeros. nanoGPT's
GELU is the exact (erf) one, HF's GPT-2 default is the tanh approximation: the config says "gelu".
"""

from __future__ import annotations

from pathlib import Path

import torch

TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
PREFIXES = ("_orig_mod.", "module.")
ARG_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "bias", "vocab_size")


class NanoGPTCheckpointError(ValueError):
    pass


def load_checkpoint(path: Path) -> dict:
    """The checkpoint dict, read safely (tensors mapped to CPU, memory-mapped)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise NanoGPTCheckpointError(f"{path}: not a loadable nanoGPT checkpoint ({type(err).__name__}: {err})") \
            from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "model_args" not in ckpt:
        raise NanoGPTCheckpointError(f"{path}: not a nanoGPT checkpoint (no 'model' and 'model_args')")
    missing = [k for k in ARG_KEYS if k not in ckpt["model_args"]]
    if missing:
        raise NanoGPTCheckpointError(f"{path}: model_args lacks {', '.join(missing)}")
    return ckpt


def clean_state_dict(state: dict) -> dict:
    """Parameter names without the prefixes torch.compile and DDP add; attention-mask buffers dropped."""
    out = {}
    for key, value in state.items():
        for prefix in PREFIXES:
            key = key.removeprefix(prefix)
        if key.endswith(".attn.bias") and value.dim() == 4:  # the causal mask of torch < 2 (not a weight)
            continue
        out[key] = value
    return out


def gpt2_config(model_args: dict, tokenizer=None):
    from transformers import GPT2Config

    dropout = float(model_args.get("dropout", 0.0))
    return GPT2Config(
        vocab_size=int(model_args["vocab_size"]), n_positions=int(model_args["block_size"]),
        n_embd=int(model_args["n_embd"]), n_layer=int(model_args["n_layer"]), n_head=int(model_args["n_head"]),
        activation_function="gelu", layer_norm_epsilon=1e-5, resid_pdrop=dropout, embd_pdrop=dropout,
        attn_pdrop=dropout, tie_word_embeddings=True,
        bos_token_id=getattr(tokenizer, "bos_token_id", None) or getattr(tokenizer, "eos_token_id", None),
        eos_token_id=getattr(tokenizer, "eos_token_id", None),
        pad_token_id=getattr(tokenizer, "pad_token_id", None))


def to_hf_state_dict(model_args: dict, state: dict) -> dict:
    """nanoGPT weights renamed and laid out as GPT2LMHeadModel's (biases filled with zeros when absent)."""
    state = clean_state_dict(state)
    n_embd, n_layer = int(model_args["n_embd"]), int(model_args["n_layer"])
    out = {}
    for key, value in state.items():
        value = value.detach().to(torch.float32)
        out[key] = value.t().contiguous() if key.endswith(TRANSPOSED) else value.clone()
    if "lm_head.weight" not in out:
        out["lm_head.weight"] = out["transformer.wte.weight"]
    if not model_args["bias"]:
        widths = {"ln_1": n_embd, "ln_2": n_embd, "attn.c_attn": 3 * n_embd, "attn.c_proj": n_embd,
                  "mlp.c_fc": 4 * n_embd, "mlp.c_proj": n_embd}
        for i in range(n_layer):
            for name, width in widths.items():
                out.setdefault(f"transformer.h.{i}.{name}.bias", torch.zeros(width))
        out.setdefault("transformer.ln_f.bias", torch.zeros(n_embd))
    return out


def to_gpt2(ckpt: dict, tokenizer=None):
    """A GPT2LMHeadModel holding the checkpoint's weights (fp32, eval mode)."""
    from transformers import GPT2LMHeadModel

    config = gpt2_config(ckpt["model_args"], tokenizer)
    model = GPT2LMHeadModel(config)
    weights = to_hf_state_dict(ckpt["model_args"], ckpt["model"])
    missing, unexpected = model.load_state_dict(weights, strict=False)
    missing = [k for k in missing if k != "lm_head.weight"]  # tied to wte
    if missing or unexpected:
        raise NanoGPTCheckpointError(f"checkpoint weights do not fit GPT-2 {dict(config.to_diff_dict())}: "
                                     f"missing {missing[:4]}, unexpected {unexpected[:4]}")
    model.tie_weights()
    return model.eval()


def export_hf(ckpt_path: Path, tokenizer, out: Path) -> Path:
    """Write `out/` (model.safetensors, config.json, generation_config.json, the tokenizer)."""
    model = to_gpt2(load_checkpoint(ckpt_path), tokenizer)
    if tokenizer is not None and len(tokenizer) > model.config.vocab_size:
        raise NanoGPTCheckpointError(f"{ckpt_path}: the model has {model.config.vocab_size} token rows, the "
                                     f"tokenizer {len(tokenizer)} tokens")
    model.save_pretrained(out, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    from trainhub.export.hf import make_ready

    make_ready(out)
    return out
