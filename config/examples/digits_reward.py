"""The reward of config/examples/grpo_digits.yaml: a dense shaping reward a model of a few thousand
parameters can learn from in a few dozen GRPO steps on a CPU.

digits: the share of a completion's non-space characters that are digits (0.0 for an empty one). A
random model's completions are mostly not digits; answering the arithmetic prompts with a bare number
scores 1.0. It is called like every reward (trainhub.rewards.load): fn(prompts, completions, **fields),
one float per completion.
"""

from __future__ import annotations

from typing import Any

from trainhub.rewards.builtin import text_of


def digits(prompts: list, completions: list, **_: Any) -> list[float]:
    out = []
    for completion in completions:
        chars = [c for c in text_of(completion) if not c.isspace()]
        out.append(sum(c.isdigit() for c in chars) / len(chars) if chars else 0.0)
    return out
