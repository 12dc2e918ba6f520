"""Group-relative advantages, the "G" of GRPO, and DAPO's dynamic-sampling filter, as pure functions.

GRPO (DeepSeekMath, arxiv.org/abs/2402.03300) drops PPO's value network: each prompt is sampled
group_size times, and a completion's advantage is its reward against its own group's,

    A_i = (R_i - mean(R_group)) / (std + 1e-4)

the same A for every token of completion i. Rewards are laid out group after group: rows
[g * group_size, (g + 1) * group_size) are prompt g's completions (how rollouts are batched, and TRL's
order). `scaling` is the job's reward_scaling (job/methods.py):

    group  divide by the group's std (GRPO, DAPO, GSPO). A group that is nearly solved (7 of 8 right)
           gets advantages as large as a 50/50 group: the difficulty bias Dr. GRPO names.
    batch  divide by the std of the whole batch: rewards keep one scale across prompts
           (Understanding R1-Zero-like training, arxiv.org/abs/2503.20783, and TRL's "batch").
    none   only centre (Dr. GRPO, arxiv.org/abs/2503.20783): A_i = R_i - mean(R_group).

The std is the sample std (n - 1), and 1e-4 is added to it, as TRL does, so a job gives the same
advantages on both backends.

DAPO's dynamic sampling (arxiv.org/abs/2503.14476, section 3.2): a group whose rewards are all equal
has A = 0 for every completion, so it adds no gradient, only dilutes the batch (and, with token_mean,
shrinks every other token's weight). DAPO drops such groups and samples more prompts until the
batch is full; `uniform_groups` says which to drop, the rollout loop refills.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor

Scaling = Literal["group", "batch", "none"]
STD_EPS = 1e-4
"""Added to the std before dividing (TRL's value): a uniform group's advantages stay 0, not 0/0."""


def group_advantages(rewards: Tensor, group_size: int, scaling: Scaling) -> Tensor:
    """Advantages [N] for rewards [N] laid out group after group (N a multiple of group_size)."""
    if rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards must be [N] with N a multiple of group_size={group_size}, got {tuple(rewards.shape)}")
    groups = rewards.view(-1, group_size)
    centred = (groups - groups.mean(-1, keepdim=True)).view(-1)
    if scaling == "none":
        return centred
    if scaling == "group":
        std = groups.std(-1, keepdim=True).expand_as(groups).reshape(-1)
    elif scaling == "batch":
        std = rewards.std()
    else:
        raise ValueError(f"unknown reward scaling {scaling!r}: group, batch or none")
    return centred / (std + STD_EPS)


def uniform_groups(rewards: Tensor, group_size: int) -> Tensor:
    """[N / group_size] bool: True for groups whose rewards are all equal (DAPO drops and refills them)."""
    groups = rewards.view(-1, group_size)
    return groups.amax(-1) == groups.amin(-1)


def keep_rows(rewards: Tensor, group_size: int) -> Tensor:
    """[N] bool: the completions of the groups dynamic sampling keeps (every row of a non-uniform group)."""
    return (~uniform_groups(rewards, group_size)).repeat_interleave(group_size)
