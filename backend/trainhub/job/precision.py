"""train.precision: a union discriminated on `type` (a bare string is shorthand): auto, bf16, fp16, fp32
and fp8. What each choice means on a device is decided in engine/precision.py; fp8's layer choice and
conversion in engine/fp8.py."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator

from trainhub.job.base import Section, _shorthand


class AutoPrecision(Section):
    type: Literal["auto"] = "auto"
    """bf16 autocast on a GPU that supports it, else fp32. CPU always runs fp32, and says so."""


class Bf16Precision(Section):
    type: Literal["bf16"] = "bf16"
    """bf16 autocast over the weights' dtype (float32 master weights by default): the usual choice on a GPU."""


class Fp16Precision(Section):
    type: Literal["fp16"] = "fp16"
    """fp16 autocast with dynamic loss scaling, for GPUs without bf16."""


class Fp32Precision(Section):
    type: Literal["fp32"] = "fp32"
    """No autocast: every op in the weights' dtype."""


FP8_RECIPES = ("tensorwise", "rowwise", "rowwise_with_gw_hp")


class Fp8Precision(Section):
    type: Literal["fp8"] = "fp8"
    """FP8 matmuls in the model's Linear layers (torchao float8 training: each matmul's operands cast to
    float8 with a fresh scale every step, fp32/bf16 master weights kept), everything else under bf16
    autocast. backend native only, on an NVIDIA GPU of compute capability 8.9 or newer (L4, L40S, RTX 40xx,
    H100, H200, B200), with backend.compile: without torch.compile the casts run as separate kernels and
    eat the gain. Needs pip install 'trainhub[fp8]'."""
    recipe: Literal["tensorwise", "rowwise", "rowwise_with_gw_hp"] = "tensorwise"
    """How the float8 scales are taken. tensorwise: one scale per tensor, the fastest (torchao: +25% on
    Llama-3-8B, 8 x H100); rowwise: one per row, robust to outlier rows, slower; rowwise_with_gw_hp:
    rowwise with the weight gradient's matmul kept in bf16. Measured at ~125M over 200 steps (H100,
    research/results/fp8.md): final eval loss against bf16 +0.13% tensorwise, +1.43% rowwise (drifting
    steadily), -0.19% rowwise_with_gw_hp."""
    filter: Literal["measured", "all"] = "measured"
    """Which Linear layers go to fp8. measured: only those whose shape pays for the casts on the recipe
    (engine/fp8.py SLOW, from research/bench_fp8_filter.py); all: every Linear whose dimensions are
    multiples of 16 (what the fp8 matmul needs). The head and LoRA adapters stay in bf16 either way."""
    skip_first_layers: int = Field(0, ge=0)
    """Keep the first N transformer blocks in bf16: the usual first remedy when an fp8 loss curve drifts
    from bf16's (compare them with python -m trainhub.metrics.drift)."""
    skip_last_layers: int = Field(0, ge=0)
    """Keep the last N transformer blocks in bf16."""
    skip_modules: list[str] = []
    """Keep in bf16 every Linear whose module name contains one of these strings (e.g. down_proj, layers.3.)."""
    head: bool = False
    """The output head in fp8: not supported (yet). The head's matmul runs inside the loss (engine/loss.py),
    chunk by chunk, not through the Linear module, so it stays in bf16."""
    allow_eager: bool = False
    """Run fp8 without backend.compile. Eager fp8 is slower than bf16 (the scale and cast kernels run one by
    one), so it is refused unless this is true: for debugging numerics, not for speed."""

    @field_validator("head")
    @classmethod
    def _no_fp8_head(cls, value: bool) -> bool:
        if value:
            raise ValueError("train.precision.head: an fp8 head is not supported yet (the head's matmul runs "
                             "inside the loss, engine/loss.py, not through the Linear module); leave it false")
        return value


# `precision: bf16` is shorthand for `{type: bf16}`.
Precision = Annotated[AutoPrecision | Bf16Precision | Fp16Precision | Fp32Precision | Fp8Precision,
                      Field(discriminator="type"), BeforeValidator(_shorthand)]
