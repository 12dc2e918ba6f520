"""job/sizes.py: the longest sequence and the tokens per step, the same for every backend."""

from __future__ import annotations

from trainhub.job.sizes import longest_sequence, tokens_per_step
from trainhub.jobfile import validate


def job(method, fmt, **data):
    return validate({"name": "x", "backend": "trl", "model": {"path": "/m"}, "method": method,
                     "data": {"train": "/d.jsonl", "format": fmt, "max_length": 128, **data},
                     "train": {"micro_batch_size": 4, "grad_accum": 2, "max_steps": 10}})


def test_sft_is_the_length_bound():
    sft = job("sft", "messages")
    assert longest_sequence(sft) == 128
    assert tokens_per_step(sft) == 4 * 2 * 128
    assert tokens_per_step(sft, processes=8) == 8 * 4 * 2 * 128


def test_a_grpo_sequence_is_prompt_plus_completion():
    grpo = job({"type": "grpo", "max_new_tokens": 32, "rewards": [{"function": "trainhub.rewards:exact_match"}]},
               "prompt", overlong="drop")
    assert longest_sequence(grpo) == 128 + 32
    assert tokens_per_step(grpo) == 4 * 2 * 160


def test_a_preference_pair_is_two_sequences_a_kto_example_one():
    assert tokens_per_step(job("dpo", "preference")) == 4 * 2 * 128 * 2
    assert tokens_per_step(job("orpo", "preference")) == 4 * 2 * 128 * 2
    assert tokens_per_step(job("kto", "preference")) == 4 * 2 * 128
