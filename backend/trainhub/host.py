"""What the machine has, found without importing torch (the hub stays light)."""

from __future__ import annotations

import csv
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
    intel_gpus: tuple[str, ...] = field(default_factory=tuple)
    """Names of the Intel GPUs visible to this process (xpu-smi), for the unsloth backend alone, as AMD's."""
    capabilities: tuple[tuple[int, int], ...] = field(default_factory=tuple)
    """Compute capability of each NVIDIA GPU in `gpus` ((9, 0) for an H100); () where nvidia-smi does not
    report it (drivers before 510), and the engine decides at start instead."""

    @property
    def has_gpu(self) -> bool:
        return bool(self.gpus)

    @property
    def has_unsloth_gpu(self) -> bool:
        """A GPU the unsloth backend can run on: NVIDIA, AMD or Intel."""
        return bool(self.gpus or self.amd_gpus or self.intel_gpus)

    def describe(self) -> str:
        if self.gpus:
            return f"{len(self.gpus)} x {self.gpus[0]}"
        if self.amd_gpus:
            return f"{len(self.amd_gpus)} x {self.amd_gpus[0]} (AMD)"
        if self.intel_gpus:
            return f"{len(self.intel_gpus)} x {self.intel_gpus[0]} (Intel)"
        return f"CPU only ({self.cores} cores)"


def detect() -> Host:
    gpus = _nvidia_gpus()
    return Host(gpus=gpus, cpu=platform.processor() or platform.machine(), cores=os.cpu_count() or 1,
                amd_gpus=_amd_gpus(), intel_gpus=_intel_gpus(), capabilities=_nvidia_capabilities() if gpus else ())


def _nvidia_gpus() -> tuple[str, ...]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    out = _smi(visible, "nvidia-smi", "--query-gpu=name", "--format=csv,noheader")
    names = tuple(line.strip() for line in (out or "").splitlines() if line.strip())
    return _narrow(names, visible)


def _nvidia_capabilities() -> tuple[tuple[int, int], ...]:
    """(major, minor) per visible NVIDIA GPU, from nvidia-smi's compute_cap ("9.0"); () when it cannot say."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    out = _smi(visible, "nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader")
    caps = [line.strip() for line in (out or "").splitlines() if line.strip()]
    if not all(re.fullmatch(r"\d+\.\d+", c) for c in caps):
        return ()
    return _narrow(tuple((int(c.split(".")[0]), int(c.split(".")[1])) for c in caps), visible)


def _amd_gpus() -> tuple[str, ...]:
    """The "Card Series" of each GPU rocm-smi lists, in index order, limited to HIP_VISIBLE_DEVICES
    (or ROCR_VISIBLE_DEVICES) when that names indices; () without rocm-smi or when it fails."""
    visible = os.environ.get("HIP_VISIBLE_DEVICES", os.environ.get("ROCR_VISIBLE_DEVICES"))
    out = _smi(visible, "rocm-smi", "--showproductname")
    found = {int(m[1]): m[2].strip()
             for m in re.finditer(r"^GPU\[(\d+)\]\s*:\s*Card Series:\s*(.+)$", out or "", re.M)}
    return _narrow(tuple(found[i] for i in sorted(found)), visible)


def _intel_gpus() -> tuple[str, ...]:
    """The "Device Name" of each GPU xpu-smi lists (`discovery --dump 1,2`, CSV), in device-id order,
    limited to ZE_AFFINITY_MASK when that names whole devices ("0,2"; sub-devices such as "0.1" leave
    the list as it is); () without xpu-smi or when it fails."""
    visible = os.environ.get("ZE_AFFINITY_MASK")
    out = _smi(visible, "xpu-smi", "discovery", "--dump", "1,2")
    found = {}
    for row in csv.reader((out or "").splitlines()):
        cells = [c.strip() for c in row]
        if len(cells) >= 2 and cells[0].isdigit() and cells[1]:
            found[int(cells[0])] = cells[1]
    return _narrow(tuple(found[i] for i in sorted(found)), visible)


def _smi(visible: str | None, tool: str, *args: str) -> str | None:
    """The output of a vendor's GPU tool; None when the visibility variable hides every GPU ("" or
    "-1"), the tool is not installed or it fails."""
    if visible in ("", "-1"):
        return None
    smi = shutil.which(tool)
    if smi is None:
        return None
    try:
        return subprocess.run([smi, *args], capture_output=True, text=True, timeout=20, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return None


def _narrow(names: tuple[str, ...], visible: str | None) -> tuple[str, ...]:
    """The GPUs a visibility variable of indices ("0,2") leaves; all of them for anything else (UUIDs)."""
    if visible and names and all(v.strip().isdigit() for v in visible.split(",")):
        return tuple(names[int(v)] for v in visible.split(",") if int(v) < len(names))
    return names


def missing_modules(*names: str) -> list[str]:
    """Which of these importable modules are not installed (checked without importing them)."""
    return [n for n in names if importlib.util.find_spec(n) is None]
