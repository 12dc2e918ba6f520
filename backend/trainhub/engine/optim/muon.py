"""Muon for the hidden matrices and AdamW for everything else, in one optimizer.

Muon (Keller Jordan 2024; "Muon is Scalable for LLM Training", arXiv 2502.16982) keeps a momentum buffer per
matrix like SGD, but steps along the buffer's nearest semi-orthogonal matrix: for M = U S V^T it takes
U V^T, every singular value set to 1, so rare directions of the gradient move as far as dominant ones.
U V^T is approximated without an SVD by a few Newton-Schulz iterations of an odd polynomial,

    X <- a X + (b A + c A^2) X,   A = X X^T,

each of which pushes every singular value s of X (after X is scaled to norm <= 1) through
p(s) = a s + b s^3 + c s^5. Keller Jordan's quintic (3.4445, -4.775, 2.0315), the same each step, has a steep
slope at 0 so that 5 steps lift s from ~1e-3 into ~[0.7, 1.2]; Polar Express (Amsel et al. 2025,
arXiv 2505.16932) picks the optimal polynomial per step and lands closer to 1 in the same 5 steps.

How this file runs it, and why:
- bf16 matmuls: the iteration is self-correcting, so bf16's 8-bit mantissa costs nothing measurable, and
  a bf16 matmul runs at ~2x the rate of tf32 (~790 vs ~400 TFLOP/s on an H200).
- The smaller Gram matrix: for a tall m x n matrix (m > n) the iteration runs on X^T X (n x n) and multiplies
  from the right, X <- a X + X (b B + c B^2) with B = X^T X, which is the transpose of the wide form applied to
  X^T. So A is min(m,n)^2 and an iteration costs 4 m^2 n + 2 m^3 FLOPs with m <= n, and no matrix is ever
  transposed in memory: an earlier version copied each tall matrix into its transpose before and after, and
  strided elementwise copies of the 1B's gate/up matrices cost milliseconds per step on an H100.
- Batched over matrices of one shape: the 16 layers of a Llama-3.2-1B hold 112 matrices of 4 shapes; one
  stack and one bmm per shape replace 112 small launches with 4 large ones. The Nesterov look-ahead is
  written in bf16 straight into the stack (one pass over the fp32 momentum, no fp32 temporary).
- Around the matmuls a step is memory traffic (momentum, look-ahead, norm, decay, update). On a CUDA GPU
  those passes run as two Triton kernels (engine/kernels/muon.py: 28 bytes per entry against eager's 46);
  elsewhere, or with a group's `fused` false, as torch's element-wise ops. torch.compile of the step
  (optim.compile) measured slower than eager on an H100 (152 against 93 ms on the 1B matrices;
  research/results/optimizers.md), and the lr, a Python float that a schedule changes every step, is a guard
  that recompiles it.
- Shape-based update scale (optim.update_scale): an m x n semi-orthogonal matrix has RMS 1/sqrt(max(m,n)),
  so the raw update's size depends on the shape. match_rms_adamw multiplies by 0.2 sqrt(max(m,n)): every
  update's RMS becomes 0.2, AdamW's typical update RMS, so an AdamW learning rate and weight decay transfer
  unchanged (Moonlight sec. 2.2) and one lr serves both halves of this optimizer. original is Keller Jordan's
  sqrt(max(1, m/n)), which keeps the spectral norm of the update fixed instead and wants lr ~0.02.
- Nesterov momentum and decoupled weight decay as torch.optim.Muon does them (param x= 1 - lr wd with the
  unscaled lr), so this optimizer's update equals torch.optim.Muon's (tests/unit/test_optim_muon.py).

The AdamW half is torch's own functional AdamW (torch.optim.adam.adam, fused on CUDA). Every param group
carries `algo` (muon or adamw), `role` and `lr_mult`, so set_lr, the checkpoint (optimizer.state_dict) and
resume work as for any torch optimizer.
"""

from __future__ import annotations

import math
from collections import defaultdict
from functools import cache

import torch
from torch.optim.adam import adam as torch_adam

from trainhub.engine.optim.groups import Group
from trainhub.job import Muon as MuonSpec

QUINTIC = ((3.4445, -4.7750, 2.0315),)
"""Keller Jordan's quintic, used at every step (slope ~3.4 at 0)."""
POLAR_EXPRESS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
"""Polar Express, 5 steps, for singular values in [1e-3, 1] with a 2% safety margin (arXiv 2505.16932; the
values published with modded-nanogpt's record #38). Past 5 steps the last polynomial repeats."""
NORM_MARGIN = {"quintic": 1.0, "polar_express": 1.02}
"""The input is divided by its Frobenius norm times this: Polar Express's polynomials were fitted for inputs
scaled 2% below norm 1 (the Frobenius norm bounds the spectral norm, so s <= 1 either way)."""


def coefficients(name: str, steps: int) -> list[tuple[float, float, float]]:
    table = QUINTIC if name == "quintic" else POLAR_EXPRESS
    return [table[min(i, len(table) - 1)] for i in range(steps)]


def orthogonalize(g: torch.Tensor, name: str = "quintic", steps: int = 5, eps: float = 1e-7,
                  norm: torch.Tensor | None = None) -> torch.Tensor:
    """The Newton-Schulz approximation of U V^T for a (batch of) matrix `g` (..., m, n), in bf16. A tall
    matrix (m > n) iterates on its n x n Gram matrix X^T X, multiplying from the right (module docstring).
    `norm`: g's Frobenius norms (..., 1, 1) in bf16 when the caller has them already (the fused step)."""
    tall = g.shape[-2] > g.shape[-1]
    x = g if g.dtype == torch.bfloat16 else g.bfloat16()
    norm = x.norm(dim=(-2, -1), keepdim=True) if norm is None else norm
    x = x / (norm * NORM_MARGIN[name]).clamp_min(eps)
    batched = x.ndim == 3
    x = x if batched else x.unsqueeze(0)
    for a, b, c in coefficients(name, steps):
        gram = x.mT @ x if tall else x @ x.mT
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b A + c A^2
        x = torch.baddbmm(x, x, poly, beta=a) if tall else torch.baddbmm(x, poly, x, beta=a)
    return x if batched else x.squeeze(0)


def update_scale(rule: str, shape: tuple[int, int]) -> float:
    """The factor on an m x n matrix's orthogonalised update (module docstring)."""
    m, n = shape
    if rule == "match_rms_adamw":
        return 0.2 * math.sqrt(max(m, n))
    if rule == "original":
        return math.sqrt(max(1.0, m / n))
    return 1.0


def _as_matrix(t: torch.Tensor) -> torch.Tensor:
    return t if t.ndim == 2 else t.reshape(t.shape[0], -1)  # a conv kernel: out x (in*k*k)


def _step_matrices(params: list[torch.Tensor], grads: list[torch.Tensor], bufs: list[torch.Tensor], mu: float,
                   nesterov: bool, lr: float, wd: float, scale: float, name: str, steps: int, eps: float,
                   fused: bool = False) -> None:
    """One Muon step for matrices of one shape, in place: momentum, the bf16 look-ahead stacked, Newton-Schulz,
    decoupled decay, the scaled update. The same arithmetic as torch.optim.Muon, batched. `fused`: the
    element-wise passes through engine/kernels/muon.py's two Triton kernels (CUDA; contiguous tensors)."""
    if fused:
        from trainhub.engine.kernels import muon as kernels

        stack, norm = kernels.momentum_lookahead(grads, bufs, mu, nesterov)
        kernels.apply_update(params, orthogonalize(stack, name, steps, eps, norm=norm), 1 - lr * wd, lr * scale)
        return
    torch._foreach_lerp_(bufs, grads, 1 - mu)  # buf = mu buf + (1 - mu) g
    stack = torch.empty((len(params), *params[0].shape), dtype=torch.bfloat16, device=params[0].device)
    for j, (g, buf) in enumerate(zip(grads, bufs, strict=True)):
        if nesterov:
            torch.lerp(g, buf, mu, out=stack[j])  # g + mu (buf - g), rounded to bf16 once
        else:
            stack[j].copy_(buf)
    ortho = orthogonalize(stack, name, steps, eps)
    if wd:
        torch._foreach_mul_(params, 1 - lr * wd)
    torch._foreach_add_(params, list(ortho.unbind(0)), alpha=-lr * scale)


def _is_sharded(p: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(p, DTensor)


def _step_sharded(params: list, grads: list, bufs: list, group: dict) -> None:
    """One Muon step over FSDP2's sharded matrices (DTensors, each rank a slice of rows). The momentum is
    element-wise, so each rank updates its own slice. Newton-Schulz needs whole matrices: each rank all-gathers
    every matrix's bf16 look-ahead, orthogonalises only the matrices it owns (matrix i belongs to rank i mod
    world; those of one shape in one batch), and each owner scatters its result back as a sharded update
    (distribute_tensor from that rank), so every rank applies decay and update to its slice alone. The same
    arithmetic as _step_matrices, so the update equals one process's (tests/integration/test_optim_fsdp2.py)."""
    from torch.distributed.tensor import distribute_tensor

    mu, lr, wd = group["momentum"], group["lr"], group["weight_decay"]
    torch._foreach_lerp_(bufs, grads, 1 - mu)
    mesh = params[0].device_mesh
    world, me = mesh.size(), mesh.get_local_rank()
    looks = [(torch.lerp(g, buf, mu) if group["nesterov"] else buf).to(torch.bfloat16).full_tensor()
             for g, buf in zip(grads, bufs, strict=True)]
    mine: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in range(me, len(params), world):
        mine[tuple(_as_matrix(looks[i]).shape)].append(i)
    updates = {}
    for idx in mine.values():
        ortho = orthogonalize(torch.stack([_as_matrix(looks[i]) for i in idx]), group["ns_coefficients"],
                              group["ns_steps"], group["eps"])
        updates |= {i: ortho[j].reshape(looks[i].shape).to(params[i].dtype) for j, i in enumerate(idx)}
    for i, p in enumerate(params):
        full = updates.get(i)
        if full is None:  # another rank's matrix: this buffer only receives its slice
            full = torch.empty(p.shape, dtype=p.dtype, device=p.to_local().device)
        update = distribute_tensor(full, mesh, p.placements, src_data_rank=i % world)
        if wd:
            p.mul_(1 - lr * wd)
        p.add_(update, alpha=-lr * update_scale(group["update_scale"], (p.shape[0], p.numel() // p.shape[0])))


def _fuses(device: torch.device) -> bool:
    """The fused element-wise kernels' default: on a CUDA GPU where Triton runs (a group's `fused` overrides)."""
    from trainhub.engine.kernels import triton_runs

    return device.type == "cuda" and triton_runs(device)


@cache
def _compiled_step():
    """_step_matrices through torch.compile (CUDA): the element-wise passes fused around the bmm calls."""
    return torch.compile(_step_matrices, dynamic=False)


class MuonWithAdamW(torch.optim.Optimizer):
    """Param groups with algo 'muon' (2-D and larger weights) or 'adamw' (the rest); see the module docstring."""

    def __init__(self, param_groups: list[dict]):
        for group in param_groups:
            if group["algo"] not in ("muon", "adamw"):
                raise ValueError(f"param group algo must be muon or adamw, not {group['algo']!r}")
            if group["algo"] == "muon" and any(p.ndim < 2 for p in group["params"]):
                raise ValueError("Muon orthogonalises matrices; a 1-D parameter belongs in an adamw group")
        super().__init__(param_groups, {})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            (self._muon if group["algo"] == "muon" else self._adamw)(group)
        return loss

    def _muon(self, group: dict) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        grads = [p.grad for p in params]
        bufs = []
        for p in params:
            state = self.state[p]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(p)
            bufs.append(state["momentum_buffer"])
        if _is_sharded(params[0]):
            _step_sharded(params, grads, bufs, group)
            return
        by_shape: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, p in enumerate(params):
            by_shape[tuple(_as_matrix(p).shape)].append(i)
        compiled = params[0].is_cuda and group.get("compile", False)
        step = _compiled_step() if compiled else _step_matrices
        fused = not compiled and group.get("fused", _fuses(params[0].device)) and all(
            t.is_contiguous() for ts in (params, grads, bufs) for t in ts)  # the kernels index flat memory
        for shape, idx in by_shape.items():
            step([_as_matrix(params[i]) for i in idx], [_as_matrix(grads[i]) for i in idx],
                 [_as_matrix(bufs[i]) for i in idx], group["momentum"], group["nesterov"], group["lr"],
                 group["weight_decay"], update_scale(group["update_scale"], shape), group["ns_coefficients"],
                 group["ns_steps"], group["eps"], fused)

    def _adamw(self, group: dict) -> None:
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state[p]
            if not state:
                on_device = group["fused"]  # the fused kernel keeps its step count on the device
                state["step"] = torch.zeros((), dtype=torch.float32, device=p.device if on_device else "cpu")
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if not params:
            return
        beta1, beta2 = group["betas"]
        torch_adam(params, grads, exp_avgs, exp_avg_sqs, [], steps, fused=group["fused"] or None,
                              decoupled_weight_decay=True, amsgrad=False, beta1=beta1, beta2=beta2, lr=group["lr"],
                              weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)


def build_muon(spec: MuonSpec, groups: dict[str, Group], device: torch.device) -> MuonWithAdamW:
    """Matrices -> Muon (LoRA's only with spec.lora == 'muon'); embed, head, vectors -> AdamW.

    Each group's lr_mult is its rate relative to optim.lr, the peak the schedule scales: the AdamW groups'
    include adamw.lr / lr when adamw.lr is set."""
    adamw_ratio = (spec.adamw.lr or spec.lr) / spec.lr
    fused = device.type == "cuda"
    out = []
    for role, g in groups.items():
        mult = getattr(spec.lr_mult, role)
        if role == "matrix":
            lora = [p for p, name in zip(g.params, g.names, strict=True) if "lora_" in name]
            muon = g.params if spec.lora == "muon" else [p for p in g.params if not any(p is q for q in lora)]
            if muon:
                out.append({"params": muon, "algo": "muon", "role": role, "lr_mult": mult, "lr": spec.lr * mult,
                            "weight_decay": spec.weight_decay, "momentum": spec.momentum,
                            "nesterov": spec.nesterov, "ns_coefficients": spec.ns_coefficients,
                            "ns_steps": spec.ns_steps, "eps": spec.eps, "update_scale": spec.update_scale,
                            "compile": spec.compile})
            if spec.lora == "muon" or not lora:
                continue
            params = lora
        else:
            params = g.params
        mult *= adamw_ratio
        out.append({"params": params, "algo": "adamw", "role": role, "lr_mult": mult, "lr": spec.lr * mult,
                    "betas": spec.adamw.betas, "eps": spec.adamw.eps, "fused": fused,
                    "weight_decay": 0.0 if role == "vector" else spec.adamw.weight_decay})
    return MuonWithAdamW(out)
