"""Reward functions for RL methods: the built-ins (builtin.py) and loading a job's rewards (load.py).

A job names a built-in as `trainhub.rewards:exact_match` or `trainhub.rewards:answer_format`.
"""

from trainhub.rewards.builtin import answer_format, exact_match

__all__ = ["answer_format", "exact_match"]
