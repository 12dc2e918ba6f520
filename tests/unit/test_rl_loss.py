"""engine/rl/loss.py: each algorithm on hand-computed tiny cases, then against TRL's GRPOTrainer loss.

TRL: GRPOTrainer._compute_loss (TRL 1.16.0) is an instance method that reads its settings from the
trainer and gets the policy's log-probs from self._get_per_token_logps_and_entropies. It is driven
here unbound, with a stand-in `self` holding those settings and returning our logp tensor, so TRL's own
code computes the loss, its gradient and its clip/KL metrics from the same tensors. A TRL release that
renames an attribute it reads fails these tests loudly (AttributeError), which is what we want.
"""

from __future__ import annotations

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from trainhub.engine.rl.loss import LossSpec, loss_mask, loss_spec, overlong_penalty, policy_loss
from trainhub.job import GRPO, GRPO_ALGORITHMS
from trainhub.runners.trl.translate import GRPO_TRL, LOSS_TYPE

REWARD = [{"function": "trainhub.rewards:exact_match"}]
TOL = dict(atol=1e-6, rtol=1e-5)


def spec(algorithm: str, **over) -> LossSpec:
    return loss_spec(GRPO(algorithm=algorithm, rewards=REWARD, max_new_tokens=4, **over))


def case(ratios, advantages, mask):
    """logp, old_logp with exp(logp - old_logp) = ratios (old_logp = 0, so logp = ln r)."""
    logp = torch.tensor(ratios, dtype=torch.float64).log().requires_grad_()
    return logp, torch.zeros_like(logp), torch.tensor(advantages, dtype=torch.float64), torch.tensor(mask, dtype=torch.float64)


# Two completions, T = 3; the second's last token is padding (its ratio 2.0 must not count).
#   row 0, A = +1: r = 1.0, 1.5, 0.5     row 1, A = -1: r = 1.1, 0.7, (2.0)
RATIOS = [[1.0, 1.5, 0.5], [1.1, 0.7, 2.0]]
ADV = [1.0, -1.0]
MASK = [[1, 1, 1], [1, 1, 0]]


def test_loss_spec_follows_the_algorithm_table_and_the_job():
    for name in GRPO_ALGORITHMS:
        s = spec(name)
        trl = GRPO_TRL[name]  # the trl backend's reading of the same table
        assert (LOSS_TYPE[s.aggregation], s.ratio_level, s.clip_low, s.clip_high, s.mask_truncated) == (
            trl["loss_type"], trl["importance_sampling_level"], trl["epsilon"], trl["epsilon_high"],
            trl["mask_truncated_completions"])
    s = spec("dapo", clip_high=0.5, loss_aggregation="constant", kl_beta=0.04)
    assert (s.clip_low, s.clip_high, s.aggregation, s.kl_beta, s.max_new_tokens) == (0.2, 0.5, "constant", 0.04, 4)


def test_grpo_hand_computed():
    # eps 0.2 / 0.2, per token -min(r A, clip(r, 0.8, 1.2) A):
    #   row 0 (A = +1): -min(1.0, 1.0) = -1.0; -min(1.5, 1.2) = -1.2; -min(0.5, 0.8) = -0.5   mean -2.7/3 = -0.9
    #   row 1 (A = -1): max(1.1, 1.1) = 1.1;   max(0.7, 0.8) = 0.8                           mean  1.9/2 = 0.95
    #   sequence_mean: (-0.9 + 0.95) / 2 = 0.025
    logp, old, adv, mask = case(RATIOS, ADV, MASK)
    loss, m = policy_loss(logp, old, adv, mask, spec=spec("grpo"))
    assert loss.item() == pytest.approx(0.025, abs=1e-12)
    # clipped: r 0.7 < 0.8 with A < 0 (low), r 1.5 > 1.2 with A > 0 (high): 1 of 5 tokens each
    assert m["clip_ratio/low"].item() == pytest.approx(0.2)
    assert m["clip_ratio/high"].item() == pytest.approx(0.2)
    assert m["ratio_mean"].item() == pytest.approx((1.0 + 1.5 + 0.5 + 1.1 + 0.7) / 5)  # 0.96
    assert "kl_mean" not in m
    # d loss / d logp_t = -A r_t / (|y_i| B) where the unclipped branch wins, 0 where the clip wins:
    #   row 0: -1.0/6, 0 (clipped), -0.5/6     row 1: +1.1/4, 0 (clipped), 0 (padding)
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1 / 6, 0, -0.5 / 6], [1.1 / 4, 0, 0]], dtype=torch.float64))


def test_dapo_hand_computed():
    # eps 0.2 / 0.28 (clip-higher): row 0's 1.5 now clips at 1.28
    #   row 0: -1.0, -1.28, -0.5 (sum -2.78)   row 1: 1.1, 0.8 (sum 1.9)
    #   token_mean: (-2.78 + 1.9) / 5 tokens = -0.176
    logp, old, adv, mask = case(RATIOS, ADV, MASK)
    loss, m = policy_loss(logp, old, adv, mask, spec=spec("dapo"))
    assert loss.item() == pytest.approx(-0.176, abs=1e-12)
    assert m["clip_ratio/high"].item() == pytest.approx(0.2)  # 1.5 > 1.28
    # over the step's 10 tokens (this micro-batch is half of it): -0.88 / 10
    loss, _ = policy_loss(logp, old, adv, mask, spec=spec("dapo"), step_tokens=torch.tensor(10))
    assert loss.item() == pytest.approx(-0.088, abs=1e-12)


def test_dr_grpo_hand_computed():
    # eps 0.2 / 0.2 as GRPO: token losses sum -2.7 + 1.9 = -0.8; constant: / (2 completions x 4 max_new_tokens)
    logp, old, adv, mask = case(RATIOS, ADV, MASK)
    loss, _ = policy_loss(logp, old, adv, mask, spec=spec("dr_grpo"))
    assert loss.item() == pytest.approx(-0.1, abs=1e-12)
    # every token's gradient has the same weight 1 / 8: row 0 token 0: -A r / 8 = -1/8
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1 / 8, 0, -0.5 / 8], [1.1 / 8, 0, 0]], dtype=torch.float64))


def test_gspo_hand_computed():
    # sequence ratio s = geometric mean of the token ratios over the mask:
    #   row 0, A = +1: r = 2, 0.5, 1      -> s = (2 * 0.5 * 1)^(1/3) = 1      unclipped: -1 on every token
    #   row 1, A = +1: r = 1.21, 1, (9)   -> s = (1.21 * 1)^(1/2) = 1.1      > 1 + 4e-4: -min(1.1, 1.0004) = -1.0004
    #   sequence_mean: (-1 - 1.0004) / 2 = -1.0002
    logp, old, adv, mask = case([[2.0, 0.5, 1.0], [1.21, 1.0, 9.0]], [1.0, 1.0], MASK)
    loss, m = policy_loss(logp, old, adv, mask, spec=spec("gspo"))
    assert loss.item() == pytest.approx(-1.0002, abs=1e-12)
    assert m["clip_ratio/high"].item() == pytest.approx(0.5)  # 1 of 2 completions
    assert m["clip_ratio/low"].item() == 0.0
    assert m["ratio_mean"].item() == pytest.approx(1.05)  # (1 + 1.1) / 2 over completions
    # d/d logp_t of -s0 / 2 with s0 = exp(mean of 3 log-ratios): -s0 / (2 * 3) = -1/6 per token; row 1 clipped: 0
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1 / 6] * 3, [0, 0, 0]], dtype=torch.float64))


def test_kl_k3_hand_computed():
    # ratios 1 and A = 0: the surrogate is 0, the loss is beta x the KL term alone.
    # k3 with d = ref - logp: exp(d) - d - 1;  d = ln 2: 1 - ln 2 = 0.306853;  d = -ln 2: ln 2 - 0.5 = 0.193147
    #   row 0: d = ln 2, 0, 0 -> mean 0.306853 / 3     row 1: d = -ln 2, 0, (pad) -> mean 0.193147 / 2
    #   loss = 0.1 * (0.306853/3 + 0.193147/2) / 2;  kl_mean over 5 tokens = (0.306853 + 0.193147) / 5 = 0.1
    logp, old, adv, mask = case([[1.0] * 3] * 2, [0.0, 0.0], MASK)
    ln2 = math.log(2)
    ref = torch.tensor([[ln2, 0, 0], [-ln2, 0, 5.0]], dtype=torch.float64)
    loss, m = policy_loss(logp, old, adv, mask, spec=spec("grpo", kl_beta=0.1), ref_logp=ref)
    assert loss.item() == pytest.approx(0.1 * ((1 - ln2) / 3 + (ln2 - 0.5) / 2) / 2, abs=1e-12)
    assert m["kl_mean"].item() == pytest.approx(0.1, abs=1e-12)
    with pytest.raises(ValueError, match="ref_logp"):
        policy_loss(logp, old, adv, mask, spec=spec("grpo", kl_beta=0.1))


def test_truncated_completions_leave_the_loss_for_dapo_only():
    mask = torch.ones(3, 4)
    truncated = torch.tensor([False, True, False])
    assert loss_mask(mask, truncated, spec("dapo")).sum(-1).tolist() == [4, 0, 4]
    assert loss_mask(mask, truncated, spec("grpo")) is mask


def test_overlong_penalty_hand_computed():
    # L_max 20, L_cache 4: no penalty up to 16, then (16 - len) / 4 down to -1 at 20, -1 beyond
    lengths = torch.tensor([10, 16, 18, 20, 21])
    assert overlong_penalty(lengths, 20, 4).tolist() == [0.0, 0.0, -0.5, -1.0, -1.0]
    with pytest.raises(ValueError):
        overlong_penalty(lengths, 20, 0)


@pytest.mark.parametrize("algorithm", list(GRPO_ALGORITHMS))
def test_micro_batches_add_up_to_the_step(algorithm):
    # micro-batch 3 x accumulation 2 == micro-batch 6 x 1, given the step's counts
    logp, old, adv, mask = random_batch(algorithm, seed=1)
    s = spec(algorithm)
    full, _ = policy_loss(logp, old, adv, mask, spec=s)
    counts = dict(step_tokens=mask.sum(), step_sequences=torch.tensor(6))
    parts = [policy_loss(logp[i:i + 3], old[i:i + 3], adv[i:i + 3], mask[i:i + 3], spec=s, **counts)[0] for i in (0, 3)]
    torch.testing.assert_close(parts[0] + parts[1], full)


# --- against TRL ---------------------------------------------------------------------------------

def random_batch(algorithm: str, seed: int, b: int = 6, t: int = 7):
    """Log-probs whose ratios straddle the algorithm's clip range, uneven lengths, mixed-sign advantages."""
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t, generator=g, dtype=torch.float64) * 3
    spread = 1e-3 if algorithm == "gspo" else 0.3  # GSPO clips at 3e-4 / 4e-4 on the sequence mean
    logp = (old + torch.randn(b, t, generator=g, dtype=torch.float64) * spread).requires_grad_()
    lengths = torch.tensor([7, 1, 4, 6, 2, 5])[:b]
    mask = (torch.arange(t) < lengths.unsqueeze(1)).to(torch.float64)
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    return logp, old, adv, mask


def trl_loss(s: LossSpec, logp, old, adv, mask, ref):
    """TRL's GRPOTrainer._compute_loss on these tensors: (loss, d loss / d logp, TRL's logged metrics)."""
    from trl import GRPOTrainer

    knobs = GRPO_TRL[next(a for a, v in GRPO_ALGORITHMS.items()
                          if v["loss_aggregation"] == s.aggregation and v["importance_ratio"] == s.ratio_level)]
    lp = logp.detach().clone().requires_grad_()
    b, t = lp.shape
    ident = lambda x, **_: x  # noqa: E731  (one process: gather and reduce are the identity)
    fake = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (lp, torch.zeros_like(lp), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, use_vllm=False, aux_loss_enabled=False,
        _entropy_bonus_enabled=False, current_gradient_accumulation_steps=1, max_completion_length=s.max_new_tokens,
        importance_sampling_level=knobs["importance_sampling_level"], loss_type=knobs["loss_type"],
        epsilon_low=s.clip_low, epsilon_high=s.clip_high, beta=s.kl_beta,
        args=SimpleNamespace(delta=None, use_bias_correction_kl=False, steps_per_generation=1),
        model=SimpleNamespace(training=True), _metrics=defaultdict(lambda: defaultdict(list)),
        accelerator=SimpleNamespace(num_processes=1, gather=ident, reduce=ident, gather_for_metrics=ident,
                                    sync_gradients=True))
    inputs = {"prompt_ids": torch.zeros(b, 1, dtype=torch.long), "prompt_mask": torch.ones(b, 1, dtype=torch.long),
              "completion_ids": torch.zeros(b, t, dtype=torch.long), "completion_mask": mask,
              "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref,
              "num_items_in_batch": mask.sum()}
    loss = GRPOTrainer._compute_loss(fake, None, inputs)
    loss.backward()
    return loss, lp.grad, fake._metrics["train"]


@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("algorithm", list(GRPO_ALGORITHMS))
def test_matches_trl(algorithm, beta):
    pytest.importorskip("trl")
    logp, old, adv, mask = random_batch(algorithm, seed=4)  # seed 4: clips low and high for every algorithm
    ref = old + 0.1 * torch.randn(old.shape, generator=torch.Generator().manual_seed(2), dtype=old.dtype)
    s = spec(algorithm, kl_beta=beta)
    loss, m = policy_loss(logp, old, adv, mask, spec=s, ref_logp=ref if beta else None)
    loss.backward()
    want, want_grad, tm = trl_loss(s, logp, old, adv, mask, ref)
    torch.testing.assert_close(loss, want, **TOL)
    torch.testing.assert_close(logp.grad, want_grad, **TOL)
    # the case clips on both sides, so the clip metrics are not trivially 0 = 0
    assert 0 < tm["clip_ratio/low_mean"][0] and 0 < tm["clip_ratio/high_mean"][0]
    assert m["clip_ratio/low"].item() == pytest.approx(tm["clip_ratio/low_mean"][0])
    assert m["clip_ratio/high"].item() == pytest.approx(tm["clip_ratio/high_mean"][0])
    if beta:
        assert m["kl_mean"].item() == pytest.approx(tm["kl"][0])
