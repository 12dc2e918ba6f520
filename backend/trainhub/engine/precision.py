"""What `train.precision` means on a device: one rule for every backend.

    asked   CPU     GPU with bf16   GPU without bf16
    auto    fp32    bf16            fp32 (fp16 where the backend trains in 16 bits only: unsloth)
    bf16    fp32 *  bf16            refused (PrecisionError)
    fp16    fp32 *  fp16            fp16
    fp32    fp32    fp32            fp32
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
