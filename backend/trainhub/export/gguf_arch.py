"""Hugging Face model -> GGUF tensors and hyperparameters, per family: what llama.cpp expects of each.

A family is data: its llama.cpp architecture, the hyperparameters it writes, and the change (if any) a
tensor needs between the transformers layout and the ggml one. Tensor names come from the gguf
package's own map (gguf.get_tensor_name_map), never from a list kept here.

Two layout changes, derived from how each side computes, not copied:

  Llama: transformers' rotary embedding rotates the two halves of each head (rotate_half: dims i and
  i + d/2 form a pair); llama.cpp's LLAMA graph rotates adjacent dims (2i, 2i + 1). So the rows of
  q_proj and k_proj are reordered inside every head, [r0..r(d/2-1), i0..i(d/2-1)] -> [r0, i0, r1, i1,
  ...]: reshape (heads, 2, d/2, in), swap the middle axes. Qwen2 and Qwen3 run llama.cpp's NEOX rotary
  (the halves layout itself), so their rows stay as they are.

  GPT-2: transformers keeps c_attn, c_proj and c_fc as Conv1D, weight [in, out]; ggml wants every
  matrix as torch.nn.Linear stores it, [out, in]: those are transposed.

A tied output head is not written: llama.cpp reuses token_embd when `output.weight` is absent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FAMILIES = {"llama": "LLAMA", "qwen2": "QWEN2", "qwen3": "QWEN3", "gpt2": "GPT2"}
"""transformers model_type -> gguf.MODEL_ARCH member. Mistral-shaped Llamas load as model_type llama."""


class ConvertError(ValueError):
    pass


@dataclass
class Tensor:
    name: str
    data: np.ndarray
    """float32, in ggml's row order ([out, in] for a matrix)."""


def family_of(config) -> str:
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        raise ConvertError(f"GGUF export supports the families {', '.join(FAMILIES)}; this model is "
                           f"'{model_type}'")
    return model_type


def arch(config):
    import gguf

    return getattr(gguf.MODEL_ARCH, FAMILIES[family_of(config)])


def arch_name(config) -> str:
    import gguf

    return gguf.MODEL_ARCH_NAMES[arch(config)]


def write_hparams(writer, config, context_length: int) -> None:
    """The architecture's hyperparameters, from the transformers config."""
    family = family_of(config)
    if family == "gpt2":
        writer.add_context_length(context_length)
        writer.add_embedding_length(config.n_embd)
        writer.add_feed_forward_length(config.n_inner or 4 * config.n_embd)
        writer.add_block_count(config.n_layer)
        writer.add_head_count(config.n_head)
        writer.add_layer_norm_eps(config.layer_norm_epsilon)
        return
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    writer.add_context_length(context_length)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_head_count(heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(float(rope_theta(config)))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // heads:  # Qwen3 and some Llamas: heads wider or narrower than h/n
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)


def rope_theta(config) -> float:
    """transformers 5 keeps the base in config.rope_parameters; 4.x in config.rope_theta."""
    params = getattr(config, "rope_parameters", None) or {}
    return params.get("rope_theta") or getattr(config, "rope_theta", None) or 10_000.0


def rope_kind(config) -> str:
    params = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    return params.get("rope_type") or params.get("type") or "default"


def llama3_rope_factors(config) -> np.ndarray:
    """Llama 3.1's frequency-dependent rotary scaling as llama.cpp takes it: one divisor per frequency
    (tensor rope_freqs), applied to base^(-2i/d). transformers scales the inverse frequencies instead:
    wavelengths shorter than original_len / high_freq_factor are kept, longer than original_len /
    low_freq_factor divided by `factor`, and those between interpolated, inv * ((1 - s) / factor + s)
    with s = (original_len / wavelength - low) / (high - low). The divisor is the reciprocal of that
    multiplier."""
    params = getattr(config, "rope_parameters", None) or config.rope_scaling
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    inv = 1.0 / (rope_theta(config) ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
    original = params["original_max_position_embeddings"]
    wavelength = 2 * np.pi / inv
    smooth = np.clip((original / wavelength - low) / (high - low), 0.0, 1.0)
    multiplier = (1 - smooth) / factor + smooth  # 1/factor for long wavelengths, 1 for short ones
    return (1.0 / multiplier).astype(np.float32)


def check_supported(config) -> None:
    """Refuse what this converter does not reproduce, rather than write a file that answers differently."""
    family = family_of(config)
    if family == "gpt2":
        if getattr(config, "activation_function", "gelu_new") not in ("gelu", "gelu_new", "gelu_pytorch_tanh"):
            raise ConvertError(f"GPT-2 with activation {config.activation_function} has no GGUF equivalent")
        return
    kind = rope_kind(config)
    if kind not in ("default", "llama3") or (kind == "llama3" and family != "llama"):
        raise ConvertError(f"rope scaling '{kind}' is not converted to GGUF by trainhub yet (plain rotary, and "
                           f"Llama 3.1's llama3 scaling for llama)")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise ConvertError(f"activation {config.hidden_act} is not the SwiGLU llama.cpp runs for {family}")
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", False):
        raise ConvertError("sliding-window attention is not converted to GGUF by trainhub")


def tensors(model) -> list[Tensor]:
    """The model's weights under their GGUF names, in ggml layout, float32."""
    import gguf
    import torch
    from transformers.pytorch_utils import Conv1D

    config = model.config
    family = family_of(config)
    names = gguf.get_tensor_name_map(arch(config), config.num_hidden_layers)
    conv1d = {f"{name}.weight" for name, module in model.named_modules() if isinstance(module, Conv1D)}
    tied = bool(getattr(config, "tie_word_embeddings", False))
    heads = getattr(config, "num_attention_heads", None)
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    out = []
    for key, value in model.state_dict().items():
        if key.endswith(".attn.bias") or key.endswith(".attn.masked_bias") or "rotary_emb" in key:
            continue  # causal-mask buffers and rotary caches, not weights
        if tied and key == "lm_head.weight":
            continue
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ConvertError(f"no GGUF name for tensor {key} ({family}); not converted")
        data = value.detach().to(torch.float32).cpu().numpy()
        if key in conv1d:
            data = data.T
        if family == "llama" and key.endswith(("self_attn.q_proj.weight", "self_attn.q_proj.bias")):
            data = halves_to_pairs(data, heads)
        elif family == "llama" and key.endswith(("self_attn.k_proj.weight", "self_attn.k_proj.bias")):
            data = halves_to_pairs(data, kv_heads)
        out.append(Tensor(name, np.ascontiguousarray(data)))
    if family == "llama" and rope_kind(config) == "llama3":
        out.append(Tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", llama3_rope_factors(config)))
    return out


def halves_to_pairs(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Rows of a q/k projection from the rotate-half layout to adjacent pairs, inside each head."""
    head_dim = w.shape[0] // n_heads
    return w.reshape(n_heads, 2, head_dim // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
