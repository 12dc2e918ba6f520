"""TRL's method keys in a Trainer's logs map onto MethodStats (hf/callback.py); no Trainer runs here
(tests/integration/test_hf_callback.py runs the callback on a real one)."""

from __future__ import annotations

import pytest

from trainhub.hf.callback import method_stats


@pytest.mark.parametrize(("logs", "prefix", "expected"), [
    ({"loss": 1.0, "reward": 0.5, "reward_std": 0.1, "kl": 0.01, "clip_ratio/region_mean": 0.02,
      "completions/mean_length": 7.0, "rewards/exact_match/mean": 0.25, "rewards/exact_match/std": 0.3}, "",
     {"reward_mean": 0.5, "reward_std": 0.1, "kl": 0.01, "clip_ratio": 0.02, "completion_length": 7.0,
      "rewards": {"exact_match": 0.25}}),
    ({"eval_loss": 0.7, "eval_rewards/chosen": 0.3, "eval_rewards/rejected": -0.1, "eval_rewards/margins": 0.4,
      "eval_rewards/accuracies": 1.0}, "eval_",
     {"chosen_reward": 0.3, "rejected_reward": -0.1, "reward_margin": 0.4, "reward_accuracy": 1.0}),
])
def test_method_keys(logs, prefix, expected):
    stats = method_stats(logs, prefix).model_dump(exclude_defaults=True)
    assert stats == expected


def test_no_method_keys_is_none():
    assert method_stats({"loss": 1.0, "grad_norm": 2.0, "learning_rate": 1e-3}) is None
