"""The tokenizer a job names, and what a model computes per token (for MFU).

The model itself is built by engine/models (trainhub's own decoder, or transformers' for any other
architecture).
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


def build_tokenizer(job: Job, run_dir: Path, save: bool = True):
    """The job's tokenizer, saved to run_dir/tokenizer unless `save` is false (a rank other than 0, which
    builds the same one: training is deterministic); a trained one is trained here."""
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
    if save:
        tok.save_pretrained(run_dir / "tokenizer")
    return tok


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
