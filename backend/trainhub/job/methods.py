"""The job's `method`: what is optimized (pretraining, SFT, the preference methods, the GRPO family with
its reward functions), one section per method, discriminated on `type`. Backend-neutral: each backend
translates these (e.g. runners/trl/translate.py's GRPO_TRL table)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from trainhub.job.base import Section, _shorthand


class Pretrain(Section):
    type: Literal["pretrain"] = "pretrain"
    """Next-token prediction on fixed-length blocks of text, documents joined by EOS."""


class SFT(Section):
    type: Literal["sft"] = "sft"
    """Supervised fine-tuning on chat conversations rendered with the tokenizer's chat template."""
    train_on: Literal["assistant", "all"] = "assistant"
    """Which tokens carry loss: the assistant turns (each closed by EOS) or every token."""


class DPO(Section):
    type: Literal["dpo"] = "dpo"
    """Direct Preference Optimization (Rafailov et al. 2023, arxiv.org/abs/2305.18290) on preference pairs: raise the policy's log-ratio to a frozen reference on the chosen answer over the rejected one. The reference is the starting model (with LoRA: the model with the adapter off)."""
    beta: float = Field(0.1, gt=0, le=100)
    """Strength of the implicit KL penalty to the reference (the temperature of the Bradley-Terry logit)."""
    loss: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"
    """sigmoid: the DPO paper's -log sigmoid(beta * margin); ipo: squared distance of the margin to 1/(2 beta) (Azar et al. 2023, arxiv.org/abs/2310.12036); hinge: max(0, 1 - beta * margin) (SLiC-HF). margin: the chosen answer's log-ratio to the reference minus the rejected one's."""


class ORPO(Section):
    type: Literal["orpo"] = "orpo"
    """Odds Ratio Preference Optimization (Hong et al. 2024, arxiv.org/abs/2403.07691): SFT loss on the chosen answer plus beta times a log-odds-ratio penalty against the rejected one; no reference model."""
    beta: float = Field(0.1, gt=0, le=100)
    """Weight of the odds-ratio term (the paper's lambda)."""


class KTO(Section):
    type: Literal["kto"] = "kto"
    """Kahneman-Tversky Optimization (Ethayarajh et al. 2024, arxiv.org/abs/2402.01306) on unpaired judgements: each preference pair gives a desirable example (prompt + chosen) and an undesirable one (prompt + rejected)."""
    beta: float = Field(0.1, gt=0, le=100)
    """Strength of the KL penalty to the reference."""
    desirable_weight: float = Field(1.0, gt=0, le=100)
    """Loss weight of desirable examples."""
    undesirable_weight: float = Field(1.0, gt=0, le=100)
    """Loss weight of undesirable examples (the paper keeps desirable_weight * n_desirable / (undesirable_weight * n_undesirable) in [1, 4/3])."""


# A reward function: `package.module:function` or `path/to/file.py:function`.
REWARD_PATTERN = r"^[^:]+:[A-Za-z_][A-Za-z0-9_]*$"


class Reward(Section):
    function: str = Field(pattern=REWARD_PATTERN)
    """A Python callable, as package.module:function or path/to/file.py:function (relative to the directory train runs in), or the built-in trainhub.rewards:exact_match and trainhub.rewards:answer_format. It is called as function(prompts, completions, **fields) with one list entry per completion, fields being the prompt records' answer and other columns, and returns a list of floats (None where it does not apply). Loaded and checked before training starts."""
    weight: float = Field(1.0, ge=-1000, le=1000)
    """Multiplies this function's rewards before they are summed."""


class GRPO(Section):
    type: Literal["grpo"] = "grpo"
    """Group-relative policy optimization: for each prompt sample group_size completions, score them with the rewards, use each completion's reward relative to its group as the advantage, and take clipped policy-gradient steps (DeepSeekMath, arxiv.org/abs/2402.03300). algorithm picks the variant; the fields left null take that variant's value (docs/backends.md lists them)."""
    algorithm: Literal["grpo", "dr_grpo", "dapo", "gspo"] = "grpo"
    """grpo: per-sequence length-normalised loss, symmetric clip 0.2, rewards scaled by the group's std. dr_grpo (arxiv.org/abs/2503.20783): loss summed over tokens and divided by a constant (group x max_new_tokens), rewards not scaled. dapo (arxiv.org/abs/2503.14476): token-mean loss over the batch, clip 0.2 low / 0.28 high, truncated completions masked. gspo (arxiv.org/abs/2507.18071): sequence-level importance ratio, clip 3e-4 / 4e-4."""
    group_size: int = Field(8, ge=2, le=1024)
    """Completions sampled per prompt. train.micro_batch_size x train.grad_accum counts completions and must be a multiple of it."""
    max_new_tokens: int = Field(256, ge=1, le=1_048_576)
    """Longest completion, in tokens."""
    temperature: float = Field(1.0, gt=0, le=10)
    """Sampling temperature."""
    top_p: float = Field(1.0, gt=0, le=1)
    """Nucleus sampling: sample from the smallest set of tokens whose probability adds up to top_p."""
    kl_beta: float = Field(0.0, ge=0, le=100)
    """Weight of the KL penalty to the starting model; 0 loads no reference model."""
    clip_low: float | None = Field(None, gt=0, le=10)
    """epsilon_low: the importance ratio is clipped below at 1 - clip_low. null: the algorithm's value."""
    clip_high: float | None = Field(None, gt=0, le=10)
    """epsilon_high: the importance ratio is clipped above at 1 + clip_high. null: the algorithm's value."""
    loss_aggregation: Literal["sequence_mean", "token_mean", "constant"] | None = None
    """How per-token losses become the loss: sequence_mean averages each completion over its tokens, then over completions (length-biased); token_mean averages over every completion token of the optimizer step; constant sums and divides by completions x max_new_tokens. null: the algorithm's value."""
    reward_scaling: Literal["group", "batch", "none"] | None = None
    """Divide each advantage (reward minus its group's mean) by the std of its group, of the whole batch, or not at all. null: the algorithm's value."""
    mask_truncated: bool | None = None
    """Leave completions cut at max_new_tokens out of the loss. null: the algorithm's value."""
    dynamic_sampling: bool = False
    """DAPO's dynamic sampling: drop groups whose completions all get the same reward and sample more until the batch is full. A backend that cannot do it refuses the job."""
    rewards: list[Reward] = Field(min_length=1)
    """The reward functions; a completion's reward is the weighted sum of theirs."""
    reward_workers: int = Field(0, ge=0, le=256)
    """Worker processes that score completions: each reward function's batch is cut into this many slices, scored in parallel and put back in order. For slow rewards (ones that run code or call a checker); each worker imports the reward functions once. 0: scored in the training process."""

    def resolved(self) -> dict[str, Any]:
        """The variant's settings with the job's own values in place of its defaults (GRPO_ALGORITHMS)."""
        out = dict(GRPO_ALGORITHMS[self.algorithm])
        for key in ("clip_low", "clip_high", "loss_aggregation", "reward_scaling", "mask_truncated"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


# What each GRPO-family algorithm means, backend-neutral; a job's non-null field wins over these.
# importance_ratio: token (PPO-style, per token) or sequence (GSPO: the length-normalised sequence ratio).
GRPO_ALGORITHMS: dict[str, dict[str, Any]] = {
    "grpo": {"loss_aggregation": "sequence_mean", "clip_low": 0.2, "clip_high": 0.2, "reward_scaling": "group",
             "mask_truncated": False, "importance_ratio": "token"},
    "dr_grpo": {"loss_aggregation": "constant", "clip_low": 0.2, "clip_high": 0.2, "reward_scaling": "none",
                "mask_truncated": False, "importance_ratio": "token"},
    "dapo": {"loss_aggregation": "token_mean", "clip_low": 0.2, "clip_high": 0.28, "reward_scaling": "group",
             "mask_truncated": True, "importance_ratio": "token"},
    "gspo": {"loss_aggregation": "sequence_mean", "clip_low": 3e-4, "clip_high": 4e-4, "reward_scaling": "group",
             "mask_truncated": False, "importance_ratio": "sequence"},
}

Method = Annotated[Pretrain | SFT | DPO | ORPO | KTO | GRPO, Field(discriminator="type"), BeforeValidator(_shorthand)]
