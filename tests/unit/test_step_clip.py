"""The gradient clip folded into torch's fused AdamW step (engine/step.py folds_clip): the step divides each
gradient by max(1, norm / max_norm) as it reads it, which must give the update that clipping first and then
stepping gives, and must leave the optimizer as it found it."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from trainhub.engine.step import folds_clip, train_step

MAX_NORM = 0.05


def _setup(fused: bool, grad_clip: float | None = MAX_NORM):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Embedding(32, 24), torch.nn.Linear(24, 32))
    params = list(model.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1, fused=fused)
    s = SimpleNamespace(
        device=torch.device("cpu"), rows=None, model=model, params=params, optimizer=optimizer, scaler=None,
        precision=SimpleNamespace(autocast_dtype=None),
        dist=SimpleNamespace(rank=0, world=1, all_sum=lambda t: t),
        job=SimpleNamespace(data=SimpleNamespace(max_length=8), train=SimpleNamespace(grad_clip=grad_clip)))

    def loss_fn(batch, n_targets):
        logits = model(batch["input_ids"])[:, :-1]
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 32), batch["labels"][:, 1:].reshape(-1),
                                                 reduction="sum") / n_targets
    return s, loss_fn


def _micro(step: int) -> list[dict]:
    g = torch.Generator().manual_seed(step)
    out = []
    for _ in range(2):
        ids = torch.randint(0, 32, (3, 8), generator=g)
        out.append({"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)})
    return out


def _run(fused: bool, steps: int = 4, grad_clip: float | None = MAX_NORM):
    s, loss_fn = _setup(fused, grad_clip)
    telemetry = SimpleNamespace(micro=lambda n, w: None, busy=lambda t: None)
    state = SimpleNamespace(step=0, tokens=0)
    norms = []
    for step in range(steps):
        _, norm, finite = train_step(s, loss_fn, _micro(step), telemetry, state)
        assert finite
        state.step += 1
        norms.append(float(norm))
    return s, norms


def test_which_optimizers_take_the_clip():
    p = [torch.nn.Parameter(torch.zeros(3))]
    assert folds_clip(torch.optim.AdamW(p, fused=True))
    assert folds_clip(torch.optim.Adam(p, fused=True))
    assert not folds_clip(torch.optim.AdamW(p))  # foreach: no grad_scale hook
    assert not folds_clip(torch.optim.SGD(p, lr=0.1))


def test_folded_clip_gives_the_clipped_update():
    folded, norms_f = _run(fused=True)
    plain, norms_p = _run(fused=False)
    assert min(norms_p) > MAX_NORM  # every step clips, so the fold is exercised, not bypassed
    assert norms_f == pytest.approx(norms_p, rel=1e-5)
    for a, b in zip(folded.params, plain.params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not hasattr(folded.optimizer, "grad_scale")  # a later GradScaler or step sees nothing left behind


def test_without_a_clip_the_fused_step_is_untouched():
    folded, _ = _run(fused=True, grad_clip=None)
    plain, _ = _run(fused=False, grad_clip=None)
    for a, b in zip(folded.params, plain.params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_nonfinite_step_skips_and_leaves_no_scale():
    s, loss_fn = _setup(fused=True)
    before = [p.detach().clone() for p in s.params]
    telemetry = SimpleNamespace(micro=lambda n, w: None, busy=lambda t: None)
    _, norm, finite = train_step(s, lambda b, n: loss_fn(b, n) * math.nan, _micro(0), telemetry,
                                 SimpleNamespace(step=0, tokens=0))
    assert not finite and not torch.isfinite(norm)
    assert not hasattr(s.optimizer, "grad_scale")
    for a, b in zip(s.params, before, strict=True):
        assert torch.equal(a, b)
