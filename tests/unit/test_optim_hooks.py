"""The loop's optimizer hooks (engine/optim/hooks.py): SophiaG's Hessian estimate at sampled labels, checked
against the same computation by hand; both hooks are no-ops for an optimizer without them."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from tests.unit.optim_helpers import params_of, tiny_llama
from trainhub.engine.models import head_weight, hidden_states
from trainhub.engine.optim import build_optimizer
from trainhub.engine.optim.hooks import estimate_hessian, evaluation_weights, hessian_due
from trainhub.job import AdamW, Sophia

CPU = torch.device("cpu")


def _batch() -> dict:
    ids = torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[0, :4] = -100  # a prompt: no targets there
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def test_hessian_estimate_is_the_squared_gradient_at_sampled_labels():
    model = tiny_llama()
    opt = build_optimizer(Sophia(betas=(0.965, 0.99)), model, CPU)
    batch = _batch()
    targets = batch["labels"][:, 1:] != -100
    torch.manual_seed(7)
    estimate_hessian(opt, lambda b: hidden_states(model, b), head_weight(model), batch, contextlib.nullcontext)
    assert all(p.grad is None for p in params_of(model))  # cleared for the next step

    torch.manual_seed(7)  # by hand: the same draw, the mean loss at the drawn labels, its squared gradient
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1][targets]
    drawn = torch.multinomial(torch.softmax(logits.detach(), dim=-1), 1).squeeze(-1)
    F.cross_entropy(logits, drawn).backward()
    for p in params_of(model):
        h = opt.state[p]["hessian"]
        expected = torch.zeros_like(p).addcmul_(p.grad, p.grad, value=1 - 0.99)  # first estimate from 0
        # the hook makes only the target positions' logits (hidden @ head.T): equal to rounding of the matmul
        assert torch.allclose(h, expected, rtol=1e-5, atol=1e-12)
    assert {g["hessian_tokens"] for g in opt.param_groups} == {int(targets.sum())} == {6 + 9}


def test_sophia_asks_every_k_steps_and_others_never():
    sophia = build_optimizer(Sophia(hessian_every=10), tiny_llama(), CPU)
    adamw = build_optimizer(AdamW(), tiny_llama(), CPU)
    assert [s for s in range(1, 31) if hessian_due(sophia, s)] == [10, 20, 30]
    assert not any(hessian_due(adamw, s) for s in range(1, 31))


def test_evaluation_weights_leave_other_optimizers_alone():
    model = tiny_llama()
    opt = build_optimizer(AdamW(), model, CPU)
    before = [p.detach().clone() for p in params_of(model)]
    with evaluation_weights(opt):
        assert all(torch.equal(a, b) for a, b in zip(before, params_of(model), strict=True))


class _Wrapped(torch.optim.Optimizer):
    """What accelerate's AcceleratedOptimizer (the Trainer's optimizer) looks like to the hook: an Optimizer holding
    the real one as .optimizer, with eval/train whatever it wraps (here they fail: the hook must look inside)."""

    def __init__(self, inner: torch.optim.Optimizer):  # no super().__init__: only the shape matters
        self.optimizer = inner

    def eval(self):
        raise AssertionError("the wrapper's eval was called")

    train = eval


def test_evaluation_weights_see_through_the_trainers_wrapper():
    """An AdamW under trl is left alone (no copy of the weights, no call); schedule-free inside is swapped."""
    from tests.unit.optim_helpers import fake_grads
    from trainhub.job import ScheduleFreeAdamW

    with evaluation_weights(_Wrapped(build_optimizer(AdamW(), tiny_llama(), CPU))):
        pass
    model = tiny_llama()
    opt = build_optimizer(ScheduleFreeAdamW(lr=1e-2), model, CPU)
    for step in range(3):  # after one step x = z = y: nothing to swap yet
        fake_grads(params_of(model), step)
        opt.step()
    y = [p.detach().clone() for p in params_of(model)]
    with evaluation_weights(_Wrapped(opt)):
        assert not opt.param_groups[0]["train_mode"]
        assert any(not torch.equal(a, b) for a, b in zip(y, params_of(model), strict=True))
    assert opt.param_groups[0]["train_mode"]
    assert all(torch.equal(a, b) for a, b in zip(y, params_of(model), strict=True))
