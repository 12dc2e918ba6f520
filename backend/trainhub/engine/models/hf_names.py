"""The one place where our model meets transformers' names: parameters and config fields.

Parameters. Our modules carry transformers' names, so the map is the identity on every weight
our model has (`hf_parameter_names` lists them for given args, in checkpoint order). Where the two
differ, it is written here:

- the tied head: one tensor in memory under two names. transformers writes it once, as
  model.embed_tokens.weight, and re-ties lm_head.weight on load; a tied checkpoint that also holds
  lm_head.weight (some exports do) has it dropped here, and we never write it.
- model.rotary_emb.inv_freq (older checkpoints saved it) is recomputed from the config, never read.
- our `rope_freq` buffer is not persistent, so never in a state dict.

Config. `args_from_hf` reads a transformers config (any of LlamaConfig, Qwen2Config, Qwen3Config,
or the object AutoConfig gives for a checkpoint) into ModelArgs, or raises `Unsupported` naming the
field our model does not implement (args.unsupported: sliding windows, other RoPE types, an
activation other than SiLU, attention dropout); the registry then takes the transformers path.
`hf_config` writes ModelArgs back as the family's transformers config class.
"""

from __future__ import annotations

import torch

from trainhub.engine.models.args import FAMILIES, Llama3Rope, ModelArgs, family_biases, unsupported

IGNORED_HF = ("model.rotary_emb.inv_freq",)
"""Checkpoint keys that carry nothing our model needs (recomputed from the config)."""


class Unsupported(ValueError):
    """A config our model does not implement; the message says which field."""


def hf_parameter_names(args: ModelArgs) -> list[str]:
    """Every weight an HF checkpoint of these args holds, in transformers' module order (the tied head once,
    as the embedding)."""
    names = ["model.embed_tokens.weight"]
    for i in range(args.num_hidden_layers):
        p = f"model.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj"):
            names += [f"{p}self_attn.{proj}.weight"] + ([f"{p}self_attn.{proj}.bias"] if args.qkv_bias else [])
        names += [p + "self_attn.o_proj.weight"] + ([p + "self_attn.o_proj.bias"] if args.o_bias else [])
        if args.qk_norm:
            names += [p + "self_attn.q_norm.weight", p + "self_attn.k_norm.weight"]
        for proj in ("gate_proj", "up_proj", "down_proj"):
            names += [f"{p}mlp.{proj}.weight"] + ([f"{p}mlp.{proj}.bias"] if args.mlp_bias else [])
        names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight"]
    names.append("model.norm.weight")
    if not args.tie_word_embeddings:
        names.append("lm_head.weight")
    return names


def to_hf(state: dict[str, torch.Tensor], args: ModelArgs) -> dict[str, torch.Tensor]:
    """Our state dict as an HF checkpoint's tensors (names identical; the tied head written once)."""
    return {name: state[name] for name in hf_parameter_names(args)}


def from_hf(tensors: dict[str, torch.Tensor], args: ModelArgs) -> dict[str, torch.Tensor]:
    """An HF checkpoint's tensors as our state dict; a missing or unknown weight is an error naming it."""
    expected = hf_parameter_names(args)
    extra = set(tensors) - set(expected) - set(IGNORED_HF) - ({"lm_head.weight"} if args.tie_word_embeddings else set())
    missing = [n for n in expected if n not in tensors]
    if missing or extra:
        raise ValueError(f"checkpoint does not fit the {args.model_type} config: missing {missing[:3]}, "
                         f"unexpected {sorted(extra)[:3]}")
    state = {name: tensors[name] for name in expected}
    if args.tie_word_embeddings:
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    return state


def args_from_hf(config) -> ModelArgs:
    """ModelArgs for a transformers config of a family we implement; `Unsupported` says why not."""
    why = unsupported(config.to_dict())
    if why is not None:
        raise Unsupported(why)
    family = config.model_type
    rope = dict(config.rope_parameters or {})
    kind = rope.get("rope_type", "default")
    llama3 = None if kind == "default" else Llama3Rope(
        factor=rope["factor"], low_freq_factor=rope["low_freq_factor"], high_freq_factor=rope["high_freq_factor"],
        original_max_position_embeddings=rope["original_max_position_embeddings"])
    eos = config.eos_token_id
    return ModelArgs(
        model_type=family, vocab_size=config.vocab_size, hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size, num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads or config.num_attention_heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
        rope_theta=rope.get("rope_theta", 10_000.0), rope_llama3=llama3,
        max_position_embeddings=config.max_position_embeddings, rms_norm_eps=config.rms_norm_eps,
        **family_biases(family, getattr(config, "attention_bias", False)),
        mlp_bias=getattr(config, "mlp_bias", False), qk_norm=FAMILIES[family].qk_norm,
        tie_word_embeddings=config.tie_word_embeddings, initializer_range=config.initializer_range,
        pad_token_id=config.pad_token_id, bos_token_id=config.bos_token_id,
        eos_token_id=tuple(eos) if isinstance(eos, list) else eos)


def hf_config(args: ModelArgs, dtype: torch.dtype | None = None):
    """The family's transformers config for these args (what save writes as config.json)."""
    import transformers

    family = FAMILIES[args.model_type]
    if family.bias == "qkv" and (not args.qkv_bias or args.o_bias) or \
            family.bias == "attention_bias" and args.qkv_bias != args.o_bias:
        raise ValueError(f"{args.model_type} has no config for qkv_bias={args.qkv_bias}, o_bias={args.o_bias}")
    if args.mlp_bias and args.model_type != "llama":
        raise ValueError(f"{args.model_type} has no MLP biases")
    rope = {"rope_type": "default", "rope_theta": args.rope_theta}
    if args.rope_llama3 is not None:
        s = args.rope_llama3
        rope.update(rope_type="llama3", factor=s.factor, low_freq_factor=s.low_freq_factor,
                    high_freq_factor=s.high_freq_factor,
                    original_max_position_embeddings=s.original_max_position_embeddings)
    fields = dict(
        vocab_size=args.vocab_size, hidden_size=args.hidden_size, intermediate_size=args.intermediate_size,
        num_hidden_layers=args.num_hidden_layers, num_attention_heads=args.num_attention_heads,
        num_key_value_heads=args.num_key_value_heads, head_dim=args.head_dim, rope_parameters=rope,
        max_position_embeddings=args.max_position_embeddings, rms_norm_eps=args.rms_norm_eps,
        tie_word_embeddings=args.tie_word_embeddings, initializer_range=args.initializer_range,
        pad_token_id=args.pad_token_id, bos_token_id=args.bos_token_id,
        eos_token_id=list(args.eos_token_id) if isinstance(args.eos_token_id, tuple) else args.eos_token_id)
    if family.bias == "attention_bias":
        fields["attention_bias"] = args.qkv_bias
    if args.model_type == "llama":
        fields["mlp_bias"] = args.mlp_bias
    config = getattr(transformers, family.config_class)(**fields)
    if dtype is not None:
        config.dtype = dtype
    return config
