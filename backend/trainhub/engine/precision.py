"""What `train.precision` means on a device: one rule for every backend.

    asked   CPU     GPU with bf16   GPU without bf16
    auto    fp32    bf16            fp32 (fp16 where the backend trains in 16 bits only: unsloth)
    bf16    fp32 *  bf16            refused (PrecisionError)
    fp16    fp32 *  fp16            fp16
    fp32    fp32    fp32            fp32
    fp8     refused bf16 autocast + float8 Linear layers (engine/fp8.py), on compute capability 8.9+,
                    compiled (fp8_refusal); native only
                    * with a note: mixed precision is a GPU feature here

Pure (no torch), so the hub's translations use it too: native, trl and unsloth decide it in their child
on the device they have (engine/device.py pick_precision, the unsloth child); nanogpt's and
llamafactory's translations write its answer into the upstream's config, and the llamafactory child
answers again on its device.
"""

from __future__ import annotations

from typing import Literal

Chosen = Literal["bf16", "fp16", "fp32"]

NAMES: dict[str, str] = {"bf16": "bf16 autocast", "fp16": "fp16 autocast + loss scaling", "fp32": "fp32"}
"""What the start row's `precision` says for each."""
DTYPES: dict[str, str] = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}
"""The torch dtype names (what nanoGPT's config and Unsloth's from_pretrained take)."""


class PrecisionError(ValueError):
    pass


def choose(asked: str, *, cuda: bool, bf16_ok: bool, notes: list[str] | None = None,
           half_only: bool = False) -> Chosen:
    """bf16, fp16 or fp32 for `asked` (train.precision.type) on this device (see the module docstring).
    `half_only`: the backend trains in 16 bits only, so auto without bf16 is fp16, not fp32."""
    if not cuda:
        if asked not in ("auto", "fp32") and notes is not None:
            notes.append(f"CPU: training in fp32 ({asked} was asked for; mixed precision is a GPU feature here)")
        return "fp32"
    if asked == "auto":
        return "bf16" if bf16_ok else "fp16" if half_only else "fp32"
    if asked == "bf16" and not bf16_ok:
        raise PrecisionError("train.precision bf16: this GPU has no bf16 support; use fp16 or fp32")
    if asked not in NAMES:
        raise PrecisionError(f"train.precision {asked}: not one of auto, {', '.join(NAMES)}")
    return asked  # type: ignore[return-value]


FP8_CAPABILITY = (8, 9)
"""The first NVIDIA compute capability with FP8 tensor cores (Ada: L4, L40S, RTX 40xx; then Hopper 9.0,
Blackwell 10.0). torch._scaled_mm refuses float8 operands below it."""


def fp8_refusal(*, gpu: str | None, capability: tuple[int, int] | None, compiled: bool,
                allow_eager: bool) -> str | None:
    """Why train.precision fp8 cannot run here, or None. `gpu` None: no CUDA GPU (CPU); `capability` None:
    not known yet (the hub without nvidia-smi's compute_cap; the engine asks torch again at start).
    Pure, so `trainhub plan` and the engine give the same message."""
    if gpu is None:
        return ("fp8 needs an NVIDIA GPU with FP8 tensor cores (compute capability "
                f"{FP8_CAPABILITY[0]}.{FP8_CAPABILITY[1]}+: L4, L40S, RTX 40xx, H100, H200, B200); this host "
                "has none (CPU); use precision bf16 or auto")
    if capability is not None and tuple(capability) < FP8_CAPABILITY:
        return (f"fp8 needs FP8 tensor cores (compute capability {FP8_CAPABILITY[0]}."
                f"{FP8_CAPABILITY[1]}+: L4, L40S, RTX 40xx, H100, H200, B200); {gpu} has "
                f"{capability[0]}.{capability[1]}; use precision bf16")
    if not compiled and not allow_eager:
        return ("fp8 needs backend.compile: true (backend: {type: native, compile: true}); "
                "without torch.compile the float8 casts run as separate kernels and fp8 is slower than bf16. "
                "Set train.precision.allow_eager: true to run it eagerly anyway (numerics checks, not speed)")
    return None
