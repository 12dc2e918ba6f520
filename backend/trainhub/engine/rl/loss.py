"""The GRPO family's policy loss as pure functions of tensors: GRPO, Dr. GRPO, DAPO and GSPO are one
clipped surrogate with four knobs (importance-ratio level, clip epsilons, aggregation, KL weight).

    spec = loss_spec(job.method)                      # the job's resolved GRPO section
    loss, metrics = policy_loss(logp, old_logp, advantages, mask, spec=spec, ref_logp=ref)

Tensors are [B, T] over completion tokens: `logp` the policy's log-probabilities of the sampled
tokens (with grad), `old_logp` those of the policy that sampled them (rollout time), `mask` 1 on
completion tokens that count, `advantages` one per completion [B] (advantages.py).

The surrogate (PPO's, arxiv.org/abs/1707.06347, as GRPO uses it, DeepSeekMath arxiv.org/abs/2402.03300):

    r_t   = exp(logp_t - old_logp_t)                                  importance ratio, per token
    l_t   = -min(r_t * A, clip(r_t, 1 - eps_low, 1 + eps_high) * A)  + beta * KL_t
    KL_t  = exp(ref_t - logp_t) - (ref_t - logp_t) - 1               k3 estimator of KL(pi || ref), >= 0

With one update per rollout r_t = 1 in value but not in gradient: d r_t = d logp_t, so the loss is
a REINFORCE step with a group baseline; the clip only bites when the batch is reused (or rollout and
training numerics differ).

The variants (job/methods.py GRPO_ALGORITHMS holds their defaults; the trl backend maps the same
table onto TRL's GRPOConfig, so one job file means one loss on both backends):

    grpo     eps 0.2/0.2, sequence_mean: each completion's token mean, then the mean over completions.
             A long completion's tokens weigh less than a short one's (the length bias Dr. GRPO names).
    dr_grpo  (arxiv.org/abs/2503.20783) constant: sum over all tokens / (completions x max_new_tokens);
             every token weighs the same, and the denominator does not depend on the sample.
    dapo     (arxiv.org/abs/2503.14476) token_mean: sum over tokens / tokens of the optimizer step;
             clip-higher eps 0.2/0.28 lets low-probability tokens grow (against entropy collapse);
             truncated completions out of the loss (`loss_mask`); overlong shaping (`overlong_penalty`).
    gspo     (arxiv.org/abs/2507.18071) the ratio is per sequence, the geometric mean of its token
             ratios s = exp(mean_t(logp_t - old_logp_t)), clipped at 3e-4/4e-4 (a sequence-level
             ratio is much closer to 1 than a token's); every token of a completion shares it.

Normalisers span the optimizer step, not the micro-batch: pass `step_tokens` (token_mean) or
`step_sequences` (sequence_mean, constant), counted over every micro-batch of the step, and the
micro-batch losses add up to the step's loss (micro 2 x accumulation 2 == micro 4 x 1). Left out,
they are this call's own counts. Counts stay tensors: nothing here syncs with the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor

if TYPE_CHECKING:
    from trainhub.job import GRPO

Aggregation = Literal["sequence_mean", "token_mean", "constant"]
RatioLevel = Literal["token", "sequence"]


@dataclass(frozen=True)
class LossSpec:
    """One GRPO-family loss: what `policy_loss` needs from the job, nothing else."""

    clip_low: float
    """eps_low: the ratio is clipped below at 1 - clip_low."""
    clip_high: float
    """eps_high: the ratio is clipped above at 1 + clip_high (DAPO's clip-higher when > clip_low)."""
    aggregation: Aggregation
    """sequence_mean (GRPO), token_mean (DAPO) or constant (Dr. GRPO)."""
    ratio_level: RatioLevel
    """token (GRPO, DAPO, Dr. GRPO) or sequence (GSPO)."""
    kl_beta: float = 0.0
    """Weight of the k3 KL to the reference policy; 0 needs no reference log-probs."""
    max_new_tokens: int = 256
    """The constant aggregation's per-completion denominator."""
    mask_truncated: bool = False
    """Completions cut at max_new_tokens leave the loss (`loss_mask`)."""


def loss_spec(method: GRPO) -> LossSpec:
    """The loss a job's GRPO section means: its algorithm's defaults (GRPO_ALGORITHMS) under its own values."""
    s = method.resolved()
    return LossSpec(clip_low=s["clip_low"], clip_high=s["clip_high"], aggregation=s["loss_aggregation"],
                    ratio_level=s["importance_ratio"], kl_beta=method.kl_beta,
                    max_new_tokens=method.max_new_tokens, mask_truncated=s["mask_truncated"])


def loss_mask(mask: Tensor, truncated: Tensor, spec: LossSpec) -> Tensor:
    """`mask` with truncated completions ([B] bool: no EOS within max_new_tokens) zeroed when the spec
    says so (DAPO). Count `step_tokens` after this, so dropped completions do not dilute the mean."""
    if not spec.mask_truncated:
        return mask
    return mask * (~truncated).unsqueeze(1).to(mask.dtype)


def log_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor, level: RatioLevel) -> Tensor:
    """log of the importance ratio: [B, T] per token, or [B, 1] for GSPO's sequence level, the masked
    mean of the token log-ratios (the log of their geometric mean; a completion with no tokens gets 0)."""
    diff = logp - old_logp
    if level == "token":
        return diff
    return ((diff * mask).sum(-1) / mask.sum(-1).clamp(min=1)).unsqueeze(-1)


def clipped_surrogate(ratio: Tensor, advantages: Tensor, clip_low: float, clip_high: float) -> Tensor:
    """-min(r A, clip(r, 1 - eps_low, 1 + eps_high) A), elementwise; `advantages` broadcast against `ratio`."""
    clipped = ratio.clamp(1 - clip_low, 1 + clip_high)
    return -torch.minimum(ratio * advantages, clipped * advantages)


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token k3 estimator of KL(pi || ref) (Schulman, joschu.net/blog/kl-approx.html): with
    d = ref - logp, exp(d) - d - 1. Unbiased on samples from pi, never negative, and its gradient in
    logp is 1 - exp(d), which pulls logp toward ref."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def aggregate(per_token: Tensor, mask: Tensor, how: Aggregation, *, max_new_tokens: int,
              step_tokens: Tensor | int | None = None, step_sequences: Tensor | int | None = None) -> Tensor:
    """Per-token losses [B, T] -> the micro-batch's share of the step's loss (see the module docstring)."""
    masked = per_token * mask
    sequences = per_token.shape[0] if step_sequences is None else step_sequences
    if how == "sequence_mean":
        return (masked.sum(-1) / mask.sum(-1).clamp(min=1)).sum() / sequences
    if how == "token_mean":
        tokens = mask.sum() if step_tokens is None else step_tokens
        return masked.sum() / torch.as_tensor(tokens, dtype=per_token.dtype).clamp(min=1)
    if how == "constant":
        return masked.sum() / (sequences * max_new_tokens)
    raise ValueError(f"unknown loss aggregation {how!r}: sequence_mean, token_mean or constant")


def _mean_over(x: Tensor, mask: Tensor) -> Tensor:
    """Masked mean of a [B, T] quantity, or of a [B, 1] one over the completions that have tokens."""
    if x.shape[-1] == 1:
        live = (mask.sum(-1, keepdim=True) > 0).to(x.dtype)
        return (x * live).sum() / live.sum().clamp(min=1)
    return (x * mask).sum() / mask.sum().clamp(min=1)


def policy_loss(logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, *, spec: LossSpec,
                ref_logp: Tensor | None = None, step_tokens: Tensor | int | None = None,
                step_sequences: Tensor | int | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """The GRPO-family loss of one micro-batch and its metrics (detached tensors, no host sync).

    logp, old_logp, ref_logp, mask: [B, T]; advantages: [B]. Metrics: clip_ratio/low (share of tokens,
    or of completions for GSPO, whose ratio fell below 1 - eps_low with A < 0, where the clip stops the
    gradient), clip_ratio/high (above 1 + eps_high with A > 0), ratio_mean, and kl_mean when kl_beta > 0.
    """
    mask = mask.to(logp.dtype)
    adv = advantages.to(logp.dtype).unsqueeze(-1)
    ratio = torch.exp(log_ratio(logp, old_logp, mask, spec.ratio_level))  # [B, T] or [B, 1]
    per_token = clipped_surrogate(ratio, adv, spec.clip_low, spec.clip_high).expand_as(logp)
    metrics = {}
    if spec.kl_beta != 0.0:
        if ref_logp is None:
            raise ValueError("kl_beta > 0 needs ref_logp, the reference policy's log-probabilities")
        kl = kl_k3(logp, ref_logp)
        per_token = per_token + spec.kl_beta * kl
        metrics["kl_mean"] = _mean_over(kl.detach(), mask)
    loss = aggregate(per_token, mask, spec.aggregation, max_new_tokens=spec.max_new_tokens,
                     step_tokens=step_tokens, step_sequences=step_sequences)
    r = ratio.detach()
    metrics["clip_ratio/low"] = _mean_over(((r < 1 - spec.clip_low) & (adv < 0)).to(r.dtype), mask)
    metrics["clip_ratio/high"] = _mean_over(((r > 1 + spec.clip_high) & (adv > 0)).to(r.dtype), mask)
    metrics["ratio_mean"] = _mean_over(r, mask)
    return loss, metrics


def overlong_penalty(lengths: Tensor, max_new_tokens: int, cache: int) -> Tensor:
    """DAPO's soft overlong punishment (arxiv.org/abs/2503.14476, eq. 13), a reward added to the task's:

        0                                   length <= L_max - L_cache
        ((L_max - L_cache) - length) / L_cache   L_max - L_cache < length <= L_max   (0 down to -1)
        -1                                  length > L_max

    with L_max = max_new_tokens and L_cache = cache, the soft zone's width (DAPO: 4096 of 20480).
    A completion is told it is running long before it is cut, instead of the cut's noisy 0 reward."""
    if not 0 < cache <= max_new_tokens:
        raise ValueError(f"overlong cache {cache} must be in (0, max_new_tokens={max_new_tokens}]")
    soft = ((max_new_tokens - cache) - lengths.to(torch.float32)) / cache
    return torch.where(lengths > max_new_tokens, torch.full_like(soft, -1.0), soft.clamp(max=0.0))
