"""backend.sdpa (engine/kernels with_sdpa, models/attention.py): the kernel order reaches the attention, changes
nothing on CPU but a note, traces into one compiled graph, and gives the same attention as torch's own order."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from trainhub.engine.kernels import EAGER, SDPA_CHOICES, with_sdpa
from trainhub.engine.models.attention import Documents, attend
from trainhub.job import NativeBackend


def test_the_choice_reaches_the_ops_on_a_gpu_and_is_a_note_on_cpu():
    notes: list[str] = []
    assert with_sdpa(EAGER, "cudnn", torch.device("cpu"), notes) is EAGER
    assert notes == ["CPU: backend.sdpa cudnn ignored (SDPA's fused GPU kernels only)"]
    ops = with_sdpa(EAGER, "cudnn", torch.device("cuda"), notes)  # a device object: no GPU needed to build it
    assert ops.sdpa[0] == "CUDNN_ATTENTION" and ops.rms_norm is EAGER.rms_norm
    assert "in the order cudnn, flash, efficient, math" in notes[-1]
    assert with_sdpa(EAGER, "auto", torch.device("cuda"), notes) is EAGER


@pytest.mark.parametrize("compiled", [False, True])
def test_an_order_gives_torchs_attention(compiled):
    torch.manual_seed(0)
    q = torch.randn(2, 12, 4, 8, requires_grad=True)
    k, v = (torch.randn(2, 12, 2, 8, requires_grad=True) for _ in range(2))
    fn = torch.compile(attend, fullgraph=True, backend="aot_eager") if compiled else attend
    got = fn(q, k, v, Documents(), 8 ** -0.5, ("MATH",))
    want = attend(q, k, v, Documents(), 8 ** -0.5)
    torch.testing.assert_close(got, want)
    assert SDPA_CHOICES["auto"] == ()


def test_the_schema_takes_auto_and_cudnn_only():
    assert NativeBackend().sdpa == "auto" and NativeBackend(sdpa="cudnn").sdpa == "cudnn"
    with pytest.raises(ValidationError, match="sdpa"):
        NativeBackend(sdpa="flash3")
