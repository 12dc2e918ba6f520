"""SophiaG (Liu et al. 2023, arXiv 2305.14342): a light second-order optimizer. Each coordinate steps by

    lr x sign(m) x min(|m| / (rho x h), 1)

with m the gradient's running average and h a running diagonal Hessian estimate: where the loss is sharply
curved (h large) the step is the Newton-like m / (rho h), where it is flat or the estimate is unreliable
the clip bounds it at lr (a sign step, like Lion). h is the Gauss-Newton-Bartlett estimate: sample labels
y^ from the model's own output distribution, take the gradient g^ of the mean loss at y^ over the batch's
B target tokens, and h <- beta2 h + (1 - beta2) B g^ * g^. It costs one more forward and backward, so the
loop runs it every k = hessian_every steps (the paper's 10) through two hooks (engine/optim/hooks.py):
`needs_hessian(step)` and `update_hessian(n_tokens)`.

Why our own: no maintained package ships SophiaG (pytorch-optimizer's Sophia is SophiaH, the Hutchinson
estimator); the reference is the authors' repository, whose community packaging (sophia-opt) the tests
compare against, bitwise. Where the reference multiplies by B inside every step (its `bs` argument, which
the authors' training script sets to the tokens of a whole optimizer step), B here is the token count of the
batch the estimate was taken on, the paper's definition, kept in the group as `hessian_tokens`. The ops are
the reference's, in its order, over each group at once (torch._foreach_*).
"""

from __future__ import annotations

import torch

from trainhub.engine.optim.groups import Group, role_param_groups
from trainhub.job import Sophia


class SophiaG(torch.optim.Optimizer):
    def __init__(self, param_groups: list[dict], *, betas: tuple[float, float], rho: float, hessian_every: int):
        super().__init__(param_groups, {"betas": betas, "rho": rho, "hessian_tokens": 0.0})
        self.hessian_every = hessian_every

    def needs_hessian(self, step: int) -> bool:
        """Whether the loop should run a Hessian estimate after optimizer step `step` (1-based)."""
        return step % self.hessian_every == 0

    def _state(self, p: torch.Tensor) -> dict:
        state = self.state[p]
        if not state:
            state["exp_avg"] = torch.zeros_like(p)
            state["hessian"] = torch.zeros_like(p)
        return state

    @torch.no_grad()
    def update_hessian(self, n_tokens: float) -> None:
        """Fold the squared gradients now in .grad (of the mean loss at sampled labels over `n_tokens` targets)
        into h."""
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            hessians = [self._state(p)["hessian"] for p in params]
            grads = [p.grad for p in params]
            beta2 = group["betas"][1]
            torch._foreach_mul_(hessians, beta2)
            torch._foreach_addcmul_(hessians, grads, grads, value=1 - beta2)
            group["hessian_tokens"] = float(n_tokens)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            states = [self._state(p) for p in params]
            grads = [p.grad for p in params]
            exp_avgs, hessians = [s["exp_avg"] for s in states], [s["hessian"] for s in states]
            lr, beta1 = group["lr"], group["betas"][0]
            torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
            torch._foreach_mul_(exp_avgs, beta1)
            torch._foreach_add_(exp_avgs, grads, alpha=1 - beta1)
            denom = torch._foreach_mul(hessians, group["rho"] * group["hessian_tokens"])
            torch._foreach_add_(denom, 1e-15)  # before the first estimate h is 0: the ratio clips to 1
            ratio = torch._foreach_div(torch._foreach_abs(exp_avgs), denom)
            torch._foreach_clamp_max_(ratio, 1.0)
            torch._foreach_addcmul_(params, torch._foreach_sign(exp_avgs), ratio, value=-lr)
        return loss


def build_sophia(spec: Sophia, groups: dict[str, Group], device: torch.device) -> SophiaG:
    return SophiaG(role_param_groups(spec, groups), betas=spec.betas, rho=spec.rho, hessian_every=spec.hessian_every)
