"""A decoder's shape as data: one frozen dataclass describes a Llama, a Qwen2 or a Qwen3.

The three families share one block (pre-norm attention and SwiGLU MLP, each around a residual)
and differ only in switches, so a family is a row of `FAMILIES`, not a class:

| family | q/k/v bias          | o bias              | per-head q/k RMSNorm | head_dim               |
| ------ | ------------------- | ------------------- | -------------------- | ---------------------- |
| llama  | config.attention_bias | config.attention_bias | no                 | hidden / heads, or set |
| qwen2  | always              | never               | no                   | hidden / heads         |
| qwen3  | config.attention_bias | config.attention_bias | yes                | set (128 in releases)  |

Field names follow transformers' config names (num_attention_heads, tie_word_embeddings, ...) on
purpose: peft reads `model.config.tie_word_embeddings`, and engine/model.py's `count_model` reads
`num_attention_heads`, `num_hidden_layers` and `head_dim`, so both work on our model unchanged.
Translation to and from a transformers config lives in hf_names.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Llama3Rope:
    """Llama 3.1's RoPE frequency scaling (rope_type "llama3"): wavelengths longer than
    original_max_position_embeddings / low_freq_factor are stretched by `factor`, shorter than
    original / high_freq_factor kept, and the band between interpolated smoothly (models/rope.py)."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True)
class Family:
    """What a family fixes. bias "attention_bias": q, k, v and o follow the config's attention_bias;
    "qkv": q, k and v always carry a bias and o never does (Qwen2)."""

    config_class: str
    bias: str
    qk_norm: bool


FAMILIES: dict[str, Family] = {
    "llama": Family("LlamaConfig", bias="attention_bias", qk_norm=False),
    "qwen2": Family("Qwen2Config", bias="qkv", qk_norm=False),
    "qwen3": Family("Qwen3Config", bias="attention_bias", qk_norm=True),
}


@dataclass(frozen=True)
class ModelArgs:
    model_type: str
    """The family: a key of FAMILIES (and transformers' config.model_type)."""
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rope_theta: float = 10_000.0
    rope_llama3: Llama3Rope | None = None
    """None: plain RoPE (rope_type "default")."""
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    qk_norm: bool = False
    tie_word_embeddings: bool = True
    initializer_range: float = 0.02
    pad_token_id: int | None = None
    """Its embedding row starts at zero and gets no gradient from the lookup (as nn.Embedding's padding_idx)."""
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.model_type not in FAMILIES:
            raise ValueError(f"unknown model family {self.model_type!r}; one of {', '.join(FAMILIES)}")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"{self.num_attention_heads} query heads do not share {self.num_key_value_heads} "
                             f"key/value heads evenly")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} is odd; rotary embeddings turn pairs of dimensions")

    @classmethod
    def from_pretrained(cls, path) -> ModelArgs:
        """The args of an HF model folder. peft calls `model.config.__class__.from_pretrained(base)` when it
        saves an adapter (to see whether the vocabulary was resized), so our config answers it too."""
        from transformers import AutoConfig

        from trainhub.engine.models.hf_names import args_from_hf

        return args_from_hf(AutoConfig.from_pretrained(path))


def family_biases(family: str, attention_bias: bool = False) -> dict[str, bool]:
    """qkv_bias and o_bias as the family sets them."""
    if FAMILIES[family].bias == "qkv":
        return {"qkv_bias": True, "o_bias": False}
    return {"qkv_bias": attention_bias, "o_bias": attention_bias}


def args_from_architecture(arch, vocab_size: int, pad_token_id: int | None = None, bos_token_id: int | None = None,
                           eos_token_id: int | None = None) -> ModelArgs:
    """The args of a new model from the job's `model.init` (trainhub.job.Architecture)."""
    return ModelArgs(
        model_type=arch.family, vocab_size=vocab_size, hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size, num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads, num_key_value_heads=arch.num_kv_heads or arch.num_heads,
        head_dim=arch.head_dim or arch.hidden_size // arch.num_heads, rope_theta=arch.rope_theta,
        max_position_embeddings=arch.max_position_embeddings, tie_word_embeddings=arch.tie_embeddings,
        qk_norm=FAMILIES[arch.family].qk_norm, **family_biases(arch.family),
        pad_token_id=pad_token_id, bos_token_id=bos_token_id, eos_token_id=eos_token_id)


def unsupported(config: dict) -> str | None:
    """Why our model cannot run this HF config (a config.json dict or a transformers config's to_dict()),
    or None. Pure Python on purpose: `trainhub plan` asks it without importing torch or transformers."""
    family = config.get("model_type")
    if family not in FAMILIES:
        return f"model_type {family!r} (own model: {', '.join(FAMILIES)})"
    if config.get("hidden_act", "silu") != "silu":
        return f"hidden_act {config['hidden_act']!r} (own model: silu)"
    if config.get("use_sliding_window") and config.get("sliding_window") is not None:
        return "sliding-window attention (use_sliding_window)"
    if config.get("attention_dropout"):
        return f"attention_dropout {config['attention_dropout']} (own model: none)"
    rope = config.get("rope_parameters") or config.get("rope_scaling") or {}
    kind = rope.get("rope_type") or rope.get("type") or "default"
    if kind not in ("default", "llama3"):
        return f"rope_type {kind!r} (own model: default, llama3)"
    if rope.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0)) != 1.0:
        return "partial rotary embeddings (partial_rotary_factor)"
    return None
