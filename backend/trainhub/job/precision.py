"""train.precision: a union discriminated on `type` (a bare string is shorthand), with room for fp8.
What each choice means on a device is decided in engine/precision.py."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

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


# `precision: bf16` is shorthand for `{type: bf16}`; FP8 joins this union with its own fields.
Precision = Annotated[AutoPrecision | Bf16Precision | Fp16Precision | Fp32Precision, Field(discriminator="type"),
                      BeforeValidator(_shorthand)]
