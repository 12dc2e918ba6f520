"""engine/precision.py: what train.precision means on a device, the one rule every backend uses."""

from __future__ import annotations

import pytest

from trainhub.engine.precision import NAMES, PrecisionError, choose

# (asked, cuda, bf16_ok) -> chosen; the table in the module docstring, cell by cell
TABLE = [
    ("auto", False, False, "fp32"), ("bf16", False, False, "fp32"), ("fp16", False, False, "fp32"),
    ("fp32", False, False, "fp32"),
    ("auto", True, True, "bf16"), ("bf16", True, True, "bf16"), ("fp16", True, True, "fp16"), ("fp32", True, True, "fp32"),
    ("auto", True, False, "fp32"), ("fp16", True, False, "fp16"), ("fp32", True, False, "fp32"),
]


@pytest.mark.parametrize("asked,cuda,bf16_ok,chosen", TABLE)
def test_the_rule(asked, cuda, bf16_ok, chosen):
    assert choose(asked, cuda=cuda, bf16_ok=bf16_ok) == chosen


def test_a_cpu_says_when_it_changes_what_was_asked():
    notes: list[str] = []
    choose("auto", cuda=False, bf16_ok=False, notes=notes)
    choose("fp32", cuda=False, bf16_ok=False, notes=notes)
    assert notes == []
    choose("bf16", cuda=False, bf16_ok=False, notes=notes)
    assert notes == ["CPU: training in fp32 (bf16 was asked for; mixed precision is a GPU feature here)"]


def test_bf16_on_a_gpu_without_it_is_refused():
    with pytest.raises(PrecisionError, match="no bf16 support"):
        choose("bf16", cuda=True, bf16_ok=False)


def test_a_16_bit_only_backend_falls_back_to_fp16():
    """Unsloth trains in 16 bits only: auto on a GPU without bf16 is fp16 there, fp32 elsewhere."""
    assert choose("auto", cuda=True, bf16_ok=False, half_only=True) == "fp16"
    assert choose("auto", cuda=True, bf16_ok=True, half_only=True) == "bf16"


def test_names_are_what_start_rows_say():
    assert NAMES == {"bf16": "bf16 autocast", "fp16": "fp16 autocast + loss scaling", "fp32": "fp32"}
