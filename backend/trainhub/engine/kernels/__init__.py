"""Fused kernels for the native engine's own model and loss, chosen by the job's `backend.kernels`.

| op            | file             | replaces (eager, reference.py)                    | wins by                            |
| ------------- | ---------------- | ------------------------------------------------- | ---------------------------------- |
| rms_norm      | rms_norm.py      | the float32 norm: ~5 element-wise kernels          | one pass each way, keeps rstd only |
| rope          | rope.py          | x*cos + rotate_half(x)*sin, for q and k apart      | q and k in one launch              |
| swiglu        | swiglu.py        | silu(gate) * up                                    | one pass, one saved tensor fewer   |
|   + down_proj | swiglu.py        | down(silu(gate) * up), the product kept            | product remade in the backward     |
| cross-entropy | cross_entropy.py | engine/loss.py's eager / chunked                   | logits never whole, bf16, 1 kernel |
| lora linear   | lora.py          | peft's base(x) + lora_B(lora_A(x)) * s (cuBLAS)   | adds fused into the GEMMs          |
|   fed by SwiGLU | lora.py        | down_proj(silu(gate) * up), the product kept       | product remade in the backward     |

    ops = kernel_ops("triton")      # an Ops: rms_norm(x, w, eps), rope(q, k, cos, sin), swiglu(gate, up), loss
    use_kernels(model, ops)         # engine/models/transformer.py routes its norms, RoPE and MLP through ops
    models.own.fuse_lora(model)     # triton with LoRA: peft's layers through lora.py (per instance)

A closed registry: `none` (the references, the default on CPU), `triton` (this package), `liger`
(Liger-Kernel's ops, when installed). `resolve` turns the job's choice (auto included) into one of them
for the device at hand. Triton is imported only when `triton` is chosen, so the eager path needs none.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch

from trainhub.engine.kernels import reference

CHOICES = ("auto", "triton", "liger", "none")


@dataclass(frozen=True)
class Ops:
    """One implementation of each op the model and the loss call through."""

    name: str
    rms_norm: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]
    rope: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    swiglu: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    loss: str | None
    """The engine/loss.py implementation this family brings (train.loss auto takes it); None: the engine's default."""
    sdpa: tuple[str, ...] = ()
    """SDPA's kernels for the attention, in priority order (torch.nn.attention.SDPBackend names): torch's
    dispatcher takes the first that accepts the call. Empty: torch's own order (flash first on a GPU)."""
    swiglu_linear: Callable[..., torch.Tensor] | None = None
    """down(swiglu(gate, up)) for a plain Linear down projection in training, the product not kept for the
    backward (swiglu.py SwigluLinearFunction); None: the MLP calls swiglu, then the layer."""


SDPA_CHOICES = {"auto": (), "cudnn": ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "MATH")}
"""backend.sdpa: auto leaves torch's order; cudnn puts cuDNN's fused attention first (then flash, ...), so a call
cuDNN does not take (its shapes, GQA on a torch without it) runs flash as under auto."""


def with_sdpa(ops: Ops, choice: str, device: torch.device, notes: list[str]) -> Ops:
    """`ops` with backend.sdpa's kernel order; on CPU the choice is moot and said so."""
    if choice == "auto":
        return ops
    if device.type != "cuda":
        notes.append(f"CPU: backend.sdpa {choice} ignored (SDPA's fused GPU kernels only)")
        return ops
    order = ", ".join(name.lower().replace("_attention", "") for name in SDPA_CHOICES[choice])
    notes.append(f"attention: SDPA kernels in the order {order} (backend.sdpa); the first that takes the call runs")
    return replace(ops, sdpa=SDPA_CHOICES[choice])


EAGER = Ops("none", reference.rms_norm, reference.rope, reference.swiglu, None)


def compute_dtype(t: torch.Tensor) -> torch.dtype:
    """The dtype a matmul on `t` runs in here: autocast's when autocast is on for t's device, else t's own."""
    device = t.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else t.dtype


def triton_runs(device: torch.device) -> bool:
    """Triton imports and can run on `device`: a CUDA GPU, or any device under TRITON_INTERPRET=1 (CPU tests)."""
    if importlib.util.find_spec("triton") is None:
        return False
    return device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"


def resolve(choice: str, device: torch.device) -> tuple[str, str]:
    """(kernels, why) for the job's backend.kernels on `device`; a clear error when the choice cannot run."""
    if choice not in CHOICES:
        raise ValueError(f"unknown backend.kernels {choice!r}; one of {', '.join(CHOICES)}")
    if choice == "none":
        return "none", "backend.kernels none"
    if choice == "auto":
        if device.type == "cuda" and triton_runs(device):
            return "triton", "auto: a CUDA GPU and Triton importable"
        return "none", f"auto: {'no CUDA GPU' if device.type != 'cuda' else 'Triton not importable'}"
    if choice == "triton" and not triton_runs(device):
        raise ValueError("backend.kernels triton needs Triton (pip install triton; CUDA builds of torch bring it) "
                         f"and a CUDA GPU; this run is on {device.type}")
    if choice == "liger":
        if importlib.util.find_spec("liger_kernel") is None:
            raise ValueError("backend.kernels liger needs Liger-Kernel: pip install 'trainhub[liger]'")
        if device.type != "cuda":
            raise ValueError(f"backend.kernels liger needs a CUDA GPU; this run is on {device.type}")
    return choice, f"backend.kernels {choice}"


def kernel_ops(name: str) -> Ops:
    """The Ops of a resolved choice (none, triton, liger); imports that family's kernels now."""
    if name == "none":
        return EAGER
    if name == "triton":
        from trainhub.engine.kernels.rms_norm import rms_norm
        from trainhub.engine.kernels.rope import rope
        from trainhub.engine.kernels.swiglu import swiglu, swiglu_linear

        return Ops("triton", rms_norm, rope, swiglu, "triton", swiglu_linear=swiglu_linear)
    if name == "liger":
        from trainhub.engine.kernels import liger

        return Ops("liger", liger.rms_norm, liger.rope, liger.swiglu, "liger")
    raise ValueError(f"unknown kernels {name!r}; one of none, triton, liger")


def use_kernels(model: torch.nn.Module, ops: Ops) -> None:
    """Route every module of `model` that has an `ops` slot (norms, attention, MLP) through `ops`."""
    for module in model.modules():
        if hasattr(module, "ops"):
            module.ops = ops


@contextlib.contextmanager
def ops_as(model: torch.nn.Module, ops: Ops) -> Iterator[None]:
    """`model`'s ops slots through `ops` inside the block, then back to what each module had."""
    saved = [(module, module.ops) for module in model.modules() if hasattr(module, "ops")]
    for module, _ in saved:
        module.ops = ops
    try:
        yield
    finally:
        for module, own in saved:
            module.ops = own
