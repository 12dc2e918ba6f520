"""The preference and RL methods in the job schema: defaults, the GRPO algorithm table, the data each
method reads, and the errors a wrong block gives."""

from __future__ import annotations

import pytest

from tests.conftest import DATA
from trainhub.job import DPO, GRPO, GRPO_ALGORITHMS, KTO, ORPO, DataSection, Job
from trainhub.jobfile import JobError, validate

BASE = {"name": "m", "model": {"path": "/tmp/model"}, "data": {"train": str(DATA / "chat.jsonl")},
        "train": {"micro_batch_size": 4, "max_steps": 2}}
REWARD = [{"function": "trainhub.rewards:exact_match"}]


def job(method, **data) -> Job:
    return validate({**BASE, "method": method, "data": {**BASE["data"], **data}})


def test_method_defaults():
    assert job({"type": "dpo"}, format="preference").method == DPO(beta=0.1, loss="sigmoid")
    assert job("orpo", format="preference").method == ORPO(beta=0.1)
    assert job("kto", format="preference").method == KTO(desirable_weight=1.0, undesirable_weight=1.0)
    g = job({"type": "grpo", "group_size": 4, "rewards": REWARD}, format="prompt").method
    assert (g.algorithm, g.kl_beta, g.rewards[0].weight) == ("grpo", 0.0, 1.0)


@pytest.mark.parametrize("algorithm", sorted(GRPO_ALGORITHMS))
def test_resolved_takes_the_algorithm_then_the_job(algorithm):
    g = GRPO(algorithm=algorithm, rewards=REWARD)
    assert g.resolved() == GRPO_ALGORITHMS[algorithm]
    g = GRPO(algorithm=algorithm, rewards=REWARD, clip_high=0.5, reward_scaling="batch")
    assert g.resolved() == {**GRPO_ALGORITHMS[algorithm], "clip_high": 0.5, "reward_scaling": "batch"}


def test_algorithm_table():
    assert GRPO_ALGORITHMS["dapo"]["clip_high"] == 0.28 and GRPO_ALGORITHMS["dapo"]["mask_truncated"]
    assert GRPO_ALGORITHMS["gspo"]["importance_ratio"] == "sequence"
    assert GRPO_ALGORITHMS["dr_grpo"]["reward_scaling"] == "none"


@pytest.mark.parametrize(("method", "fmt", "problem"), [
    ("dpo", "messages", "method dpo needs data.format preference, not messages"),
    ("kto", "prompt", "method kto needs data.format preference, not prompt"),
    ("grpo", "preference", "method grpo needs data.format prompt, not preference"),
    ("dpo", "preference", None), ("grpo", "prompt", None), ("orpo", "auto", None),
])
def test_which_format_each_method_reads(method, fmt, problem):
    assert DataSection(train="a", format=fmt).method_problem(method) == problem


def test_wrong_format_is_a_job_error():
    with pytest.raises(JobError, match="method dpo needs data.format preference, not messages"):
        job("dpo", format="messages")


def test_grpo_needs_rewards_and_whole_groups():
    with pytest.raises(JobError, match="method.rewards"):
        job({"type": "grpo"}, format="prompt")
    with pytest.raises(JobError, match="not a multiple of method.group_size 3"):
        job({"type": "grpo", "group_size": 3, "rewards": REWARD}, format="prompt")
    with pytest.raises(JobError, match="method.rewards.0.function"):
        job({"type": "grpo", "group_size": 4, "rewards": [{"function": "no_colon"}]}, format="prompt")
    with pytest.raises(JobError, match="method.algorithm: 'ppo' is not one of|algorithm"):
        job({"type": "grpo", "algorithm": "ppo", "group_size": 4, "rewards": REWARD}, format="prompt")


def test_unknown_key_in_a_method_block():
    with pytest.raises(JobError, match="unknown key 'method.betta'; did you mean 'method.beta'"):
        job({"type": "dpo", "betta": 0.2}, format="preference")
