#!/usr/bin/env python3
"""Bytes the own model saves for its backward in one forward, kernels none against triton (issue 26: what the
GRPO update's activations cost at the peak). Counted by storage through torch.autograd.graph.saved_tensors_hooks,
the weights left out; on CPU the Triton kernels run under Triton's interpreter, so this runs anywhere.

Shape: the Qwen2.5-0.5B block (hidden 896, MLP 4864, 14 heads, 2 KV heads) in bf16, --layers blocks, one row of
--tokens tokens (the vocabulary is small: the head is not part of the blocks' activations).

    PYTHONPATH=backend python research/bench_saved_activations.py          # ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before any kernel module is imported; ignored on CUDA

import torch  # noqa: E402

from trainhub.engine.kernels import kernel_ops, use_kernels  # noqa: E402
from trainhub.engine.models.args import ModelArgs  # noqa: E402
from trainhub.engine.models.transformer import CausalLM  # noqa: E402


def saved_bytes(kernels: str, layers: int, tokens: int) -> tuple[int, int]:
    """(bytes, storages) of activations one forward saves for the backward."""
    args = ModelArgs(model_type="qwen2", vocab_size=512, hidden_size=896, intermediate_size=4864,
                     num_hidden_layers=layers, num_attention_heads=14, num_key_value_heads=2, head_dim=64,
                     qkv_bias=True, o_bias=False, mlp_bias=False, qk_norm=False, rms_norm_eps=1e-6, rope_theta=1e6,
                     rope_llama3=None, tie_word_embeddings=True, max_position_embeddings=4096,
                     initializer_range=0.02, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    model = CausalLM(args).to(torch.bfloat16)
    use_kernels(model, kernel_ops(kernels))
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(torch.randint(3, 512, (1, tokens)))
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    acts = [n for ptr, n in seen.items() if ptr not in weights]
    return sum(acts), len(acts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=290)
    a = ap.parse_args()
    rows = {k: saved_bytes(k, a.layers, a.tokens) for k in ("none", "triton")}
    per = a.layers * a.tokens
    print("| kernels | saved for backward | storages | per token and block |\n|---|---:|---:|---:|")
    for k, (n, count) in rows.items():
        print(f"| {k} | {n / 1e6:.2f} MB | {count} | {n / per / 1e3:.1f} KB |")
    print(f"\ntriton keeps {rows['triton'][0] / rows['none'][0]:.2f}x of eager's activations")


if __name__ == "__main__":
    main()
