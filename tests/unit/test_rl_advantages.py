"""engine/rl/advantages.py: group normalisation variants and DAPO's dynamic-sampling filter.

Hand-computed cases first. TRL computes advantages inside GRPOTrainer._generate_and_score_completions,
which generates and scores before it gets there and cannot be driven with tensors alone; the TRL
comparison below is therefore against a transcription of that method's formula (TRL 1.16.0,
multi_objective_aggregation="sum_then_normalize", the trl backend's setting), using TRL's own nanstd.
"""

from __future__ import annotations

import math

import pytest
import torch

from trainhub.engine.rl.advantages import STD_EPS, group_advantages, keep_rows, uniform_groups

# Two groups of 4: prompt 0 solved once, prompt 1 solved every time.
REWARDS = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0], dtype=torch.float64)


def test_group_scaling_hand_computed():
    # group 0: mean 0.25, centred 0.75, -0.25 x 3; sample variance (0.75^2 + 3 x 0.25^2) / 3 = 0.75 / 3 = 0.25, std 0.5
    # group 1: all equal -> centred 0, std 0 -> 0 / (0 + 1e-4) = 0
    want = [0.75 / 0.5001] + [-0.25 / 0.5001] * 3 + [0.0] * 4
    torch.testing.assert_close(group_advantages(REWARDS, 4, "group"), torch.tensor(want, dtype=torch.float64))


def test_batch_scaling_hand_computed():
    # centred by group as above; divided by the whole batch's sample std:
    # mean 5/8 = 0.625; squares: 5 x 0.375^2 + 3 x 0.625^2 = 0.703125 + 1.171875 = 1.875; / 7 -> std sqrt(0.267857)
    std = math.sqrt(1.875 / 7)
    want = [0.75 / (std + 1e-4)] + [-0.25 / (std + 1e-4)] * 3 + [0.0] * 4
    torch.testing.assert_close(group_advantages(REWARDS, 4, "batch"), torch.tensor(want, dtype=torch.float64))


def test_no_scaling_only_centres():
    # Dr. GRPO: R - mean(group), no division
    torch.testing.assert_close(group_advantages(REWARDS, 4, "none"),
                               torch.tensor([0.75, -0.25, -0.25, -0.25, 0, 0, 0, 0], dtype=torch.float64))


def test_group_order_matters_and_bad_shapes_fail():
    # the same rewards in groups of 2: (1, 0) -> mean 0.5, std sqrt(0.5) = 0.7071 -> +-0.5 / 0.7072
    a = group_advantages(REWARDS[:2], 2, "group")
    torch.testing.assert_close(a, torch.tensor([0.5, -0.5], dtype=torch.float64) / (math.sqrt(0.5) + STD_EPS))
    with pytest.raises(ValueError, match="multiple of group_size"):
        group_advantages(REWARDS[:7], 4, "group")
    with pytest.raises(ValueError, match="unknown reward scaling"):
        group_advantages(REWARDS, 4, "rank")


def test_dynamic_sampling_drops_uniform_groups():
    # groups: (1,0,0,0) informative, (1,1,1,1) all solved, (0,0,0,0) all failed, (0.5, 0.5, 0.5, 0.6) informative
    r = torch.cat([REWARDS, torch.zeros(4), torch.tensor([0.5, 0.5, 0.5, 0.6])])
    assert uniform_groups(r, 4).tolist() == [False, True, True, False]
    assert keep_rows(r, 4).tolist() == [True] * 4 + [False] * 8 + [True] * 4
    # a dropped group is exactly one whose advantages are all 0 under every scaling
    for scaling in ("group", "batch", "none"):
        a = group_advantages(r, 4, scaling).view(-1, 4)
        assert (a == 0).all(-1).tolist() == uniform_groups(r, 4).tolist()


def trl_transcription(rewards: torch.Tensor, group_size: int, scale: str) -> torch.Tensor:
    """TRL 1.16.0 GRPOTrainer._generate_and_score_completions' advantage lines, transcribed (finite rewards)."""
    from trl.trainer.utils import nanstd

    mean = torch.nanmean(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size, dim=0)
    if scale in ("group", "none"):
        std = nanstd(rewards.view(-1, group_size), dim=1).repeat_interleave(group_size, dim=0)
    else:
        std = nanstd(rewards).expand_as(rewards)
    adv = rewards - mean
    return adv / (std + 1e-4) if scale != "none" else adv


@pytest.mark.parametrize("scaling", ["group", "batch", "none"])
def test_matches_trl_formula(scaling):
    pytest.importorskip("trl")
    rewards = torch.randn(24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    rewards[8:12] = 0.5  # one uniform group
    torch.testing.assert_close(group_advantages(rewards, 4, scaling), trl_transcription(rewards, 4, scaling))
