"""The "hf" path: any other architecture as transformers' AutoModelForCausalLM, behind the same interface.

The loop never calls the model's own forward here either: `hidden` runs the decoder transformers
keeps under the head (`get_decoder()`, i.e. `model.model`) and returns its last hidden state, and
`head_weight` is the output embedding's weight, so the loss (engine/loss.py) treats both paths
alike and the [tokens, vocab] logits are never built by transformers. LoRA comes from peft with
task_type CAUSAL_LM as before; its layers are swapped into the decoder in place, so calling the
decoder directly still runs them.

One consequence to know: a wrapper that hooks the top-level module's forward (DDP's gradient
synchronisation) does not see this call; FSDP2, whose hooks sit on each sharded module, does.
"""

from __future__ import annotations

import torch
from torch import nn

from trainhub.engine.models.checkpointing import checkpoint_kwargs, offload
from trainhub.engine.models.own import DTYPES, INPUTS, unwrap


def _family_config(family: str):
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    return {"llama": LlamaConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config}[family]


def build(job, tokenizer) -> nn.Module:
    """transformers' model on CPU in the job's dtype: from model.init (the family's transformers config) or
    model.path; LoRA through peft when asked."""
    from transformers import AutoModelForCausalLM

    spec, dtype = job.model, DTYPES[job.model.dtype]
    if spec.init is not None:
        arch = spec.init
        config = _family_config(arch.family)(
            vocab_size=len(tokenizer), hidden_size=arch.hidden_size, intermediate_size=arch.intermediate_size,
            num_hidden_layers=arch.num_layers, num_attention_heads=arch.num_heads,
            num_key_value_heads=arch.num_kv_heads or arch.num_heads,
            head_dim=arch.head_dim or arch.hidden_size // arch.num_heads,
            max_position_embeddings=arch.max_position_embeddings, rope_theta=arch.rope_theta,
            tie_word_embeddings=arch.tie_embeddings, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
        config._attn_implementation = spec.attention
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=dtype, attn_implementation=spec.attention,
                                                     trust_remote_code=spec.trust_remote_code)
        if len(tokenizer) > model.get_input_embeddings().num_embeddings:
            raise ValueError(f"tokenizer has {len(tokenizer)} tokens but the model's embedding only "
                             f"{model.get_input_embeddings().num_embeddings}")
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if job.train.grad_checkpointing != "none":  # selective: our policy passed through to torch's checkpoint
        kwargs = checkpoint_kwargs(job.train.grad_checkpointing)
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the older name warns
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if job.adapter.type == "qlora":  # frozen NF4 base weights under the adapters (quant.py)
        from trainhub.engine.models.quant import quantize_nf4

        quantize_nf4(model)
    if job.adapter.type in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model

        lora = job.adapter
        model = get_peft_model(model, LoraConfig(
            r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.targets,
            task_type="CAUSAL_LM", bias="none"))
    return model


def hidden(model: nn.Module, batch: dict) -> torch.Tensor:
    """The decoder's last hidden state [B, T, H]; varlen keys pass through as FlashAttentionKwargs."""
    decoder = unwrap(model).get_decoder()
    inputs = {k: batch[k] for k in INPUTS if k in batch}
    with offload(getattr(decoder, "activation_offload", False) and torch.is_grad_enabled(),
                 decoder.get_input_embeddings().weight.device):
        return decoder(**inputs, use_cache=False).last_hidden_state


def set_offload(model: nn.Module, on: bool) -> None:
    """Keep the decoder's saved tensors in host memory (checkpointing.py)."""
    unwrap(model).get_decoder().activation_offload = on


def head_weight(model: nn.Module) -> torch.Tensor:
    return unwrap(model).get_output_embeddings().weight


def compile_blocks(model: nn.Module) -> None:
    """torch.compile the decoder in place (module identity and parameter names unchanged). The whole decoder,
    not each layer: transformers checkpoints a layer in its __call__, outside what Module.compile compiles,
    and selective checkpointing must see the ops it chooses from, which a compiled layer hides."""
    unwrap(model).get_decoder().compile()
