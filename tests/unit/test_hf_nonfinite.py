"""train.on_nonfinite: skip under a Trainer (hf/nonfinite.py): a bad step leaves the weights and
the optimizer's state exactly as they were, with torch's fused AdamW (the flag as found_inf, no sync,
as on a GPU) and with any other optimizer (the flag read); the count read back per step."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from trainhub.hf.nonfinite import SkipNonFinite


class FakeTrainer:
    """What SkipNonFinite touches: training_step (returns the step's loss) and state.global_step."""

    def __init__(self):
        self.state = SimpleNamespace(global_step=0)

    def training_step(self, param, loss_value: float):
        param.grad = torch.full_like(param, loss_value)  # a NaN loss gives NaN gradients
        return torch.tensor(loss_value)


@pytest.mark.parametrize("fused", [True, False])
def test_a_bad_step_changes_nothing_and_is_counted(fused):
    param = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.AdamW([param], lr=0.1, fused=fused, foreach=None if fused else True)
    trainer = FakeTrainer()
    guard = SkipNonFinite(trainer, opt)

    def step(loss_value):
        loss = trainer.training_step(param, loss_value)
        opt.step()
        opt.zero_grad(set_to_none=True)
        trainer.state.global_step += 1
        return loss

    assert step(0.5) == pytest.approx(0.5)
    after_good = (param.detach().clone(), opt.state[param]["exp_avg"].clone(), float(opt.state[param]["step"]))
    assert step(float("nan")) == 0.0  # the Trainer's running loss gets 0, not NaN
    assert not hasattr(opt, "found_inf")
    assert torch.equal(param.detach(), after_good[0])
    assert torch.equal(opt.state[param]["exp_avg"], after_good[1]) and float(opt.state[param]["step"]) == after_good[2]
    assert guard.read(2) == 1 and guard.in_a_row == 1
    step(float("inf"))
    step(0.25)  # a good step after: applied, and the run of skips ends
    assert not torch.equal(param.detach(), after_good[0]) and float(opt.state[param]["step"]) == 2
    assert guard.read(3) == 1 and guard.in_a_row == 2  # step 4 not read yet: read(step) takes steps <= step
    assert guard.read(4) == 0 and guard.in_a_row == 0


def test_a_finite_loss_with_overflowing_gradients_is_skipped():
    param = torch.nn.Parameter(torch.ones(2))
    opt = torch.optim.AdamW([param], lr=0.1, fused=True)
    trainer = FakeTrainer()
    guard = SkipNonFinite(trainer, opt)
    trainer.training_step(param, 1.0)
    param.grad = torch.tensor([1.0, float("inf")])
    opt.step()
    assert torch.equal(param.detach(), torch.ones(2)) and guard.read(1) == 1
