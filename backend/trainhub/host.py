"""What the machine has, found without importing torch (the hub stays light)."""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Host:
    gpus: tuple[str, ...] = field(default_factory=tuple)
    """Names of the NVIDIA GPUs visible to this process."""
    cpu: str = ""
    cores: int = 1
    amd_gpus: tuple[str, ...] = field(default_factory=tuple)
    """Names of the AMD GPUs visible to this process (rocm-smi). Only the unsloth backend takes them
    (Unsloth runs on ROCm); the other backends' checks count NVIDIA GPUs only, as their environments
    install CUDA builds."""

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    def describe(self) -> str:
        if self.gpus:
            return f"{len(self.gpus)} x {self.gpus[0]}"
        if self.amd_gpus:
            return f"{len(self.amd_gpus)} x {self.amd_gpus[0]} (AMD)"
        return f"CPU only ({self.cores} cores)"


def detect() -> Host:
    return Host(gpus=_nvidia_gpus(), cpu=platform.processor() or platform.machine(), cores=os.cpu_count() or 1,
                amd_gpus=_amd_gpus())


def _nvidia_gpus() -> tuple[str, ...]:
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return ()
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    try:
        out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return ()
    names = tuple(line.strip() for line in out.splitlines() if line.strip())
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible and names and all(v.strip().isdigit() for v in visible.split(",")):
        names = tuple(names[int(v)] for v in visible.split(",") if int(v) < len(names))
    return names


def _amd_gpus() -> tuple[str, ...]:
    """The "Card Series" of each GPU rocm-smi lists, in index order, limited to HIP_VISIBLE_DEVICES
    (or ROCR_VISIBLE_DEVICES) when that names indices; () without rocm-smi or when it fails."""
    visible = os.environ.get("HIP_VISIBLE_DEVICES", os.environ.get("ROCR_VISIBLE_DEVICES"))
    if visible in ("", "-1"):
        return ()
    smi = shutil.which("rocm-smi")
    if smi is None:
        return ()
    try:
        out = subprocess.run([smi, "--showproductname"], capture_output=True, text=True, timeout=20,
                             check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return ()
    found = {int(m[1]): m[2].strip() for m in re.finditer(r"^GPU\[(\d+)\]\s*:\s*Card Series:\s*(.+)$", out, re.M)}
    names = tuple(found[i] for i in sorted(found))
    if visible and names and all(v.strip().isdigit() for v in visible.split(",")):
        names = tuple(found[int(v)] for v in visible.split(",") if int(v) in found)
    return names


def missing_modules(*names: str) -> list[str]:
    """Which of these importable modules are not installed (checked without importing them)."""
    return [n for n in names if importlib.util.find_spec(n) is None]
