"""QLoRA on the native engine: the frozen base weights of every linear layer in 4-bit NF4 (torchao), LoRA on top.

QLoRA (Dettmers et al. 2023, https://arxiv.org/abs/2305.14314) stores each frozen weight as 4-bit codes of the
NormalFloat grid (16 values at the quantiles of a standard normal, which is what trained weights look like),
one absmax scale per block of 64 values, and those scales themselves quantized to 8 bits per block of 256
("double quantization"): ~4.13 bits a weight, so the 1.0 B linear parameters of a Llama-3.2-1B shape take
0.52 GB instead of 2.1 GB in bf16. The adapters and every gradient stay in the model's 16-bit (or 32-bit)
dtype: a forward dequantizes the weight to the activations' dtype block by block and runs an ordinary matmul,
and the backward does the same for the input gradient (no gradient for the frozen weight).

torchao's NF4Tensor is that format as a tensor subclass: `nn.Linear.weight = Parameter(nf4, requires_grad=False)`
and F.linear dispatches to its own autograd function, on CPU as on CUDA. peft's LoRA wraps such a Linear like
any other (it reads in/out features and the weight's dtype only), so adapter files carry the same keys as
under plain LoRA and load on the unquantized base (tests/unit/test_qlora.py).

What is quantized: every nn.Linear but the output head, inside the decoder (as bitsandbytes' QLoRA under
transformers does: the embedding and the head stay in the model's dtype; tied or not, the head is the
embedding's shape and its matmul is the loss's, engine/loss.py). The merged export does not dequantize: it
loads the original base weights again and merges the adapter into them (`merge_onto_base` in engine/models/__init__.py, which knows both model paths), so the merged
model carries no quantization error of the base.
"""

from __future__ import annotations

import math

import torch
from torch import nn

BLOCK = 64
"""Values per absmax scale (QLoRA's and torchao's default)."""
SCALER_BLOCK = 256
"""Scales per 8-bit block of the double quantization; smaller where a weight has fewer blocks (tiny models)."""


def to_nf4(weight: torch.Tensor) -> torch.Tensor:
    """An NF4Tensor of `weight`, dequantizing to its dtype."""
    from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import to_nf4 as torchao_to_nf4

    if weight.numel() % BLOCK:
        raise ValueError(f"qlora: a weight of shape {tuple(weight.shape)} has {weight.numel()} values, not a multiple "
                         f"of the NF4 block size {BLOCK}")
    return torchao_to_nf4(weight.detach(), BLOCK, math.gcd(weight.numel() // BLOCK, SCALER_BLOCK))


def quantize_nf4(model: nn.Module) -> int:
    """Replace the weight of every nn.Linear but the output head by its frozen NF4 form, in place; returns how
    many were quantized. Call before adding LoRA (peft wraps the quantized layers)."""
    head = model.get_output_embeddings()
    count = 0
    for module in model.modules():
        if isinstance(module, nn.Linear) and module is not head:
            module.weight = nn.Parameter(to_nf4(module.weight), requires_grad=False)
            count += 1
    if not count:
        raise ValueError("qlora: the model has no linear layer to quantize")
    return count


def is_nf4(t: torch.Tensor) -> bool:
    return type(t).__name__ == "NF4Tensor"
