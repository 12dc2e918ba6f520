"""Kernel tests run for real on CUDA and, without a GPU, under Triton's interpreter on CPU tensors.

TRITON_INTERPRET must be set when a kernel is decorated, i.e. when trainhub.engine.kernels.<op> is first
imported: the test modules import their op inside the tests, while the fixture below has it set. It is set
per test (monkeypatch), not for the session, so no other test directory runs with it. Skipped where
Triton is not installed.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(autouse=True)
def _interpret_on_cpu(monkeypatch):
    if DEVICE == "cpu" and "TRITON_INTERPRET" not in os.environ:
        monkeypatch.setenv("TRITON_INTERPRET", "1")

TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.bfloat16: dict(atol=2e-2, rtol=2e-2)}
"""Per dtype, kernel vs eager on the same inputs. float32: both compute in float32, differing in the order of
sums. bf16: each side rounds to bf16 at different points (eager after every element-wise kernel, the kernels
once at the end): a couple of bf16 ulps (2^-8 relative each) on values of order 1."""


def pytest_collection_modifyitems(config, items):
    if importlib.util.find_spec("triton") is None:
        skip = pytest.mark.skip(reason="Triton not installed (pip install triton)")
        for item in items:
            if "tests/kernels" in str(item.fspath):
                item.add_marker(skip)


def rand(*shape, dtype, scale=1.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=gen) * scale).to(DEVICE, dtype).requires_grad_()


def twin(t: torch.Tensor) -> torch.Tensor:
    return t.detach().clone().requires_grad_()
