"""What the machine has, found without importing torch (the hub stays light)."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Host:
    gpus: tuple[str, ...] = field(default_factory=tuple)
    """Names of the NVIDIA GPUs visible to this process."""
    cpu: str = ""
    cores: int = 1

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    def describe(self) -> str:
        if self.gpus:
            return f"{len(self.gpus)} x {self.gpus[0]}"
        return f"CPU only ({self.cores} cores)"


def detect() -> Host:
    return Host(gpus=_nvidia_gpus(), cpu=platform.processor() or platform.machine(), cores=os.cpu_count() or 1)


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


def missing_modules(*names: str) -> list[str]:
    """Which of these importable modules are not installed (checked without importing them)."""
    return [n for n in names if importlib.util.find_spec(n) is None]
