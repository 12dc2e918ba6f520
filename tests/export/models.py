"""Tiny models of every GGUF family, built here from random weights (no download), with a BPE tokenizer
trained on the shipped stories by trainhub itself.

Weights are transformers' own init (std 0.02) except the token embedding (tied to the head), drawn
so that logits have a standard deviation of about `logit_std` (4): peaked next-token distributions, so
top-1 agreement measures the export, not ties between near-equal logits, while the blocks stay as
smooth as a trained model's (a model with every weight 10x larger is chaotic: its f32 GGUF already
differs by 0.08 in log-prob from float summation order alone). Widths are multiples of 256, so llama.cpp's k-quants (256 weights per
super-block) apply to every matrix rather than falling back to another type.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from tests.conftest import DATA
from trainhub.export.hf import make_ready

WIDTH, FFN = 256, 512


@functools.cache
def tokenizer(template: str = "chatml", vocab: int = 400):
    from trainhub.data.tokenizer import train_bpe

    texts = [json.loads(line)["text"] for line in (DATA / "stories.jsonl").read_text().splitlines()[:400]]
    return train_bpe(texts, vocab, template=template)


def build(family: str, out: Path, tok=None, width: int = WIDTH, ffn: int = FFN, logit_std: float = 3.0,
          init_std: float = 0.04, seed: int = 0, **extra) -> Path:
    """A saved HF model folder of `family` (llama, qwen2, qwen3, gpt2)."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config, Qwen3Config

    tok = tok or tokenizer()
    ids = dict(vocab_size=len(tok), pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
               bos_token_id=tok.bos_token_id)
    if family == "gpt2":
        config = GPT2Config(n_embd=width, n_layer=2, n_head=4, n_positions=128, initializer_range=init_std, **ids,
                            **extra)
    else:
        cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config}[family]
        config = cls(hidden_size=width, intermediate_size=ffn, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True,
                     initializer_range=init_std, **ids, **extra)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # norms and biases away from their 1 and 0, so a misplaced one shows
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
        embed = model.get_input_embeddings().weight
        embed.copy_(torch.randn_like(embed) * logit_std / width ** 0.5)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    make_ready(out)  # as every trainhub save does (export.hf.save_final)
    return out
