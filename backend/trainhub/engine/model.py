"""Building the tokenizer and the model a job names; counting what the model computes.

A model family is data: `FAMILIES` maps the job's `family` to a transformers
config class, and the architecture's fields map onto that config. LoRA comes
from peft. Nothing here subclasses a transformers model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from trainhub.data.chat import TemplateError
from trainhub.data.sources import training_texts
from trainhub.data.templates import TEMPLATES, apply_template
from trainhub.data.tokenizer import load_tokenizer, train_bpe
from trainhub.job import Job
from trainhub.metrics.flops import flops_per_token

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_tokenizer(job: Job, run_dir: Path):
    """The job's tokenizer, saved to run_dir/tokenizer (a trained one is trained here)."""
    init = job.model.init
    if init is None:
        tok = load_tokenizer(job.model.path, job.model.trust_remote_code)
    elif init.tokenizer.type == "path":
        tok = load_tokenizer(init.tokenizer.path, job.model.trust_remote_code)
    else:
        tok = train_bpe(training_texts(job.data, job.seed), init.tokenizer.vocab_size, init.tokenizer.min_frequency,
                        template=job.data.template or "chatml")
    if job.data.template is not None:
        apply_template(tok, job.data.template)
    elif job.method.type == "sft" and not tok.chat_template:
        raise TemplateError(f"the tokenizer has no chat template to render conversations with; set data.template "
                         f"to one of: {', '.join(TEMPLATES)}")
    tok.save_pretrained(run_dir / "tokenizer")
    return tok


def _family_config(family: str):
    from transformers import LlamaConfig, Qwen2Config, Qwen3Config

    return {"llama": LlamaConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config}[family]


def build_model(job: Job, tokenizer):
    """The model on CPU, in the job's dtype, with LoRA applied when the job asks."""
    from transformers import AutoModelForCausalLM

    spec = job.model
    dtype = DTYPES[spec.dtype]
    if spec.init is not None:
        arch = spec.init
        config = _family_config(arch.family)(
            vocab_size=len(tokenizer),
            hidden_size=arch.hidden_size,
            intermediate_size=arch.intermediate_size,
            num_hidden_layers=arch.num_layers,
            num_attention_heads=arch.num_heads,
            num_key_value_heads=arch.num_kv_heads or arch.num_heads,
            head_dim=arch.head_dim or arch.hidden_size // arch.num_heads,
            max_position_embeddings=arch.max_position_embeddings,
            rope_theta=arch.rope_theta,
            tie_word_embeddings=arch.tie_embeddings,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=tokenizer.bos_token_id,
        )
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
    if job.train.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if job.adapter.type == "lora":
        from peft import LoraConfig, get_peft_model

        lora = job.adapter
        model = get_peft_model(model, LoraConfig(
            r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=lora.targets,
            task_type="CAUSAL_LM", bias="none"))
    return model


@dataclass(frozen=True)
class ModelCount:
    """What the model computes per token, for MFU (formula in trainhub.metrics.flops)."""

    params_total: int
    params_trainable: int
    matmul_frozen: int
    matmul_trainable: int
    layers: int
    heads: int
    head_dim: int

    def flops_per_token(self, seq_len: int) -> float:
        return flops_per_token(n_frozen=self.matmul_frozen, n_trainable=self.matmul_trainable, layers=self.layers,
                               heads=self.heads, head_dim=self.head_dim, seq_len=seq_len)


def count_model(model) -> ModelCount:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    embed = base.get_input_embeddings().weight
    head = base.get_output_embeddings()
    tied = head is not None and head.weight is embed
    seen: set[int] = set()
    total = trainable = mm_frozen = mm_trainable = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
        if p is embed and not tied:
            continue  # an untied input embedding is a lookup, not a matmul
        if p.requires_grad:
            mm_trainable += p.numel()
        else:
            mm_frozen += p.numel()
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return ModelCount(total, trainable, mm_frozen, mm_trainable, config.num_hidden_layers, heads, head_dim)
