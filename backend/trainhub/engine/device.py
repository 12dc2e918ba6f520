"""Device, precision and memory: the few host facts the loop needs."""

from __future__ import annotations

import contextlib
import resource
import sys
from dataclasses import dataclass

import torch

from trainhub.engine.precision import NAMES, PrecisionError, choose
from trainhub.metrics.flops import peak_flops


@dataclass(frozen=True)
class Precision:
    name: str
    """What is used, said plainly: 'bf16 autocast', 'fp16 autocast + loss scaling', 'fp32'."""
    autocast_dtype: torch.dtype | None
    scaler: bool


def pick_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def pick_precision(spec, device: torch.device, notes: list[str], *, compiled: bool = False) -> Precision:
    """What `train.precision` (a job section: auto, bf16, fp16, fp32, fp8) means on this device (the rule is
    engine/precision.py's, for every backend); a CPU note when it changes what was asked. The one place
    every backend that trains in trainhub's own process turns it into autocast and loss scaling.
    fp8 is bf16 autocast with the Linear layers converted later (engine/fp8.py); refused here, before any
    work, where it cannot run (CPU, a GPU below compute capability 8.9) or without `compiled`."""
    cuda = device.type == "cuda"
    if spec.type == "fp8":
        from trainhub.engine.fp8 import check_device

        check_device(spec, device, compiled=compiled)
        return Precision(f"fp8 {spec.recipe} Linear layers (torchao) + bf16 autocast", torch.bfloat16, False)
    try:
        chosen = choose(spec.type, cuda=cuda, bf16_ok=cuda and torch.cuda.is_bf16_supported(), notes=notes)
    except PrecisionError as err:
        raise PrecisionError(f"{torch.cuda.get_device_name()}: {err}") from None
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[chosen]
    return Precision(NAMES[chosen], dtype, chosen == "fp16")


def autocast(device: torch.device, precision: Precision):
    if precision.autocast_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=precision.autocast_dtype)


def device_facts(device: torch.device) -> dict:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return {"device": "cuda", "device_name": name, "device_count": 1, "peak_flops": peak_flops(name),
                "torch": torch.__version__}
    import platform

    return {"device": "cpu", "device_name": platform.processor() or platform.machine(), "device_count": 1,
            "peak_flops": None, "torch": torch.__version__}


def peak_memory_gb(device: torch.device) -> float:
    """Peak CUDA memory allocated by torch, or on CPU the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1e9 if sys.platform == "darwin" else rss * 1024 / 1e9


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # sync
