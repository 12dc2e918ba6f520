"""Activation checkpointing per block, and CPU offload of what stays saved: `train.grad_checkpointing`
and `train.activation_offload`.

Training keeps, for the backward pass, the tensors each op saved in the forward. Per block of a
Llama-3.2-1B shape at 8192 tokens that is ~2 GB in bf16 (the SwiGLU's three [T, 8192] tensors and
the fp32 RMSNorm statistics are most of it); over 16 blocks it is most of a step's peak. Three
choices, the job's:

| mode      | kept from the forward, per block                  | recomputed in the backward        |
| --------- | ------------------------------------------------- | --------------------------------- |
| none      | everything autograd saves                         | nothing                           |
| full      | the block's input                                 | the whole block (~1/3 more FLOPs) |
| selective | the block's input and the outputs of the matmuls  | norms, activations, rope, casts:  |
|           | and of attention (SELECTIVE_SAVE)                 | element-wise, memory-bound, cheap |

Selective uses torch's selective checkpointing (torch.utils.checkpoint with a policy from
`create_selective_checkpoint_contexts`): the policy sees each aten op of the forward and says
"must save" for a matmul or attention kernel, "prefer recompute" for the rest. It costs a re-run
of the element-wise ops (a few percent of a step's FLOPs) and saves what they produced: at
intermediate size 4x hidden that is silu(gate) and silu(gate) * up, two of the MLP's three wide
tensors, plus every fp32 copy the norms make.

Offload (`save_on_cpu`) moves every tensor autograd saves outside a checkpointed region to pinned
host memory and brings it back for the backward. Inside a checkpointed block nothing is saved
through autograd, but torch's non-reentrant checkpoint saves the block's *inputs* as saved tensors,
so under full checkpointing offload leaves ~nothing per block on the GPU; under none it moves every
activation (PCIe-bound: useful only where memory, not time, is what runs out). Under selective the
matmul outputs live in the policy's own cache and stay on the GPU; only the block inputs move.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

MODES = ("none", "full", "selective")

_aten = torch.ops.aten
SELECTIVE_SAVE = {
    _aten.mm.default, _aten.addmm.default, _aten.bmm.default, _aten.baddbmm.default,
    _aten._scaled_dot_product_flash_attention.default, _aten._scaled_dot_product_efficient_attention.default,
    _aten._scaled_dot_product_cudnn_attention.default, _aten._scaled_dot_product_flash_attention_for_cpu.default,
    _aten._flash_attention_forward.default, _aten._efficient_attention_forward.default,
}
"""aten ops whose outputs selective checkpointing keeps: the matmuls (nn.Linear on 3-D inputs reaches mm
or addmm; peft's LoRA matmuls too) and the attention kernels (their outputs include the softmax statistics
the backward needs). Everything else in a block is element-wise or a reduction and is recomputed."""


def saves(op) -> bool:
    """Whether selective checkpointing keeps this op's outputs: SELECTIVE_SAVE, or an attention forward kernel
    registered outside aten (flash_attn's varlen op, torch's varlen_attn), named as such."""
    if op in SELECTIVE_SAVE:
        return True
    name = str(op)
    return ("attn" in name or "attention" in name) and "backward" not in name


def _selective_policy(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if saves(op) else CheckpointPolicy.PREFER_RECOMPUTE


def selective_context():
    """context_fn for torch.utils.checkpoint: keep matmul and attention outputs, recompute the rest."""
    return create_selective_checkpoint_contexts(_selective_policy)


def checkpoint_kwargs(mode: str) -> dict:
    """Keyword arguments for torch.utils.checkpoint.checkpoint under `mode` (full or selective); what
    transformers' gradient_checkpointing_enable passes on as gradient_checkpointing_kwargs, too."""
    if mode not in MODES or mode == "none":
        raise ValueError(f"checkpoint_kwargs: mode {mode!r} is not one of full, selective")
    kwargs = {"use_reentrant": False}
    if mode == "selective":
        kwargs["context_fn"] = selective_context
    return kwargs


def run_block(forward: Callable, mode: str, *args):
    """forward(*args), checkpointed under `mode` while gradients are recorded."""
    if mode == "none" or not torch.is_grad_enabled():
        return forward(*args)
    return checkpoint(forward, *args, **checkpoint_kwargs(mode))


def check_mode(mode: str | bool) -> str:
    """A mode name; True and False (the older boolean switch) mean full and none."""
    if isinstance(mode, bool):
        return "full" if mode else "none"
    if mode not in MODES:
        raise ValueError(f"unknown checkpointing mode {mode!r}; one of {', '.join(MODES)}")
    return mode


def offload(on: bool, device: torch.device | None = None):
    """A context under which tensors saved for the backward wait in (pinned, on a GPU) host memory."""
    if not on:
        return contextlib.nullcontext()
    pin = device is not None and device.type == "cuda"
    return torch.autograd.graph.save_on_cpu(pin_memory=pin)


__all__ = ["MODES", "SELECTIVE_SAVE", "check_mode", "saves", "checkpoint_kwargs", "offload", "run_block", "selective_context"]
