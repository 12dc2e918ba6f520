"""Wrap the model for training, in one documented order:

    fp8 -> kernels -> activation checkpointing -> compile -> FSDP2 / DDP

Each wrapper must see the module the previous one made, and the order is not free:
  1. fp8 swaps nn.Linear layers for float8 ones, so it runs on the bare model, before anything wraps them
     (FSDP2 then all-gathers the float8 weights: torchao's float8 all-gather needs the swap first).
  1b. kernels (engine/kernels, backend.kernels) set the own model's ops slot (norms, RoPE, SwiGLU) and fuse
     plain LoRA layers; after fp8, so a LoRA layer whose base became float8 keeps peft's forward (the fused
     LoRA path takes plain nn.Linear bases only), and before compile, so the traced graph holds the ops.
  2. activation checkpointing wraps each block, so the recomputed region is one block; it must be inside
     compile (compile traces through the checkpoint) and inside FSDP2 (FSDP2's per-block all-gather then
     happens once for the forward and once for the recompute-and-backward).
  3. compile, per the model's own compile_model (in place: names and module identity unchanged), before the
     distributed wrapper, so the traced graph holds the model's math and not FSDP2's hooks or DDP's buckets.
  4. FSDP2 (`fully_shard` on every block, then on the root) or DDP, last: they own the parameters from here
     on (FSDP2 replaces them with sharded DTensors), so the optimizer is built after this returns.

The module wrapped in step 4 is the loss itself (`LossModule`: hidden states, head, cross-entropy), not
the bare model: the output head runs inside the wrapped forward, so FSDP2 gathers the embedding and head
with the root and DDP counts the head's gradient in its buckets. Activation checkpointing is each block's
own switch (models/checkpointing.py, set when the model is built from train.grad_checkpointing), applied
inside the block's forward, so it sits inside compile and FSDP2 as step 2 asks. fp8 tensorwise under FSDP2
all-gathers the float8 layers' weights in float8 (torchao's float8 all-gather: half of bf16's bytes), their
scales precomputed after each optimizer step in one all-reduce (engine/setup.py); the other recipes
all-gather bf16/fp32 weights.
"""

from __future__ import annotations

import torch
from torch import nn

from trainhub.engine.dist import Dist
from trainhub.engine.fp8 import convert_to_fp8, float8_all_gather
from trainhub.engine.kernels import EAGER, Ops, use_kernels
from trainhub.engine.models import compile_model, path_of
from trainhub.engine.models.own import fuse_lora

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def apply_kernels(model: nn.Module, ops: Ops, adapter: str, notes: list[str]) -> None:
    """The own model's element-wise ops through `ops`, and with Triton's and a LoRA or QLoRA adapter, peft's
    layers through the fused LoRA Function (training mode only: models/own.py fuse_lora; QLoRA's NF4 weights
    stay 4-bit, kernels/lora.py). transformers' model keeps its own forward."""
    if path_of(model) != "own":
        return
    use_kernels(model, ops)
    if ops.name == "triton" and adapter in ("lora", "qlora"):
        notes.append(f"kernels: {fuse_lora(model)} LoRA layers fused (engine/kernels/lora.py)")
    if ops.swiglu_linear is not None:
        notes.append("kernels: in training the MLP's down projection remakes the SwiGLU product in its backward "
                     "instead of keeping it (engine/kernels/swiglu.py; not for float8 layers)")


def parallelize(loss_module: nn.Module, job, d: Dist, device: torch.device, notes: list[str],
                ops: Ops = EAGER) -> nn.Module:
    """`loss_module` (holding the model as `.model`) wrapped for training; returns what the step calls. `ops`:
    the kernels engine/kernels resolved for backend.kernels."""
    model = loss_module.model
    if job.train.precision.type == "fp8":
        gather = float8_all_gather(job.train.precision, d.strategy)
        notes += convert_to_fp8(model, job.train.precision, float8_all_gather=gather).lines()
        if gather:
            notes.append("fp8: FSDP2 all-gathers the float8 layers' weights in float8 (tensorwise)")
    apply_kernels(model, ops, job.adapter.type, notes)
    if getattr(job.backend, "compile", False):
        if device.type == "cuda":
            compile_model(model)
        else:
            notes.append("CPU: backend.compile ignored (torch.compile is used on GPUs only)")
    if d.strategy == "fsdp2":
        return shard(loss_module, job.distributed.fsdp2, device, notes)
    if d.strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        notes.append(f"distributed: ddp over {d.world} process(es)")
        return DistributedDataParallel(loss_module, device_ids=ids)
    return loss_module


def blocks(model: nn.Module) -> list[nn.Module]:
    """The model's transformer blocks: the children of every ModuleList named `layers` or `h` (trainhub's
    decoder, transformers' Llama/Qwen/Mistral/GPT-2 families alike)."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] in ("layers", "h"):
            found += list(module)
    return found


def shard(loss_module: nn.Module, opts, device: torch.device, notes: list[str]) -> nn.Module:
    """FSDP2: each block a unit of its own (gathered for its forward and backward), then the root (embedding,
    final norm, head), over one mesh of every process."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (torch.distributed.get_world_size(),))
    kwargs: dict = {"mesh": mesh}
    if opts.param_dtype or opts.reduce_dtype:
        kwargs["mp_policy"] = MixedPrecisionPolicy(
            param_dtype=DTYPES[opts.param_dtype] if opts.param_dtype else None,
            reduce_dtype=DTYPES[opts.reduce_dtype] if opts.reduce_dtype else None)
    if opts.cpu_offload:
        kwargs["offload_policy"] = CPUOffloadPolicy()
    units = blocks(loss_module.model)
    if not units:
        raise ValueError("distributed.strategy fsdp2: found no transformer blocks (a ModuleList named layers "
                         "or h) to shard in this model")
    for block in units:
        fully_shard(block, reshard_after_forward=opts.reshard_after_forward, **kwargs)
    fully_shard(loss_module, **kwargs)  # the root: its reshard_after_forward is FSDP2's own choice
    notes.append(f"distributed: fsdp2 over {mesh.size()} process(es), {len(units)} blocks sharded")
    return loss_module
