"""The `optim` section: one class per optimizer, a union discriminated on `type`, and the `schedule`
section every optimizer shares.

Every optimizer has `lr` (the peak the schedule shapes; engine/schedule.py) and `lr_mult` (one multiplier
per parameter role, engine/optim/groups.py). The rest are each optimizer's own fields, named as its
paper or reference implementation names them. Defaults are the reference implementation's unless a
field's docstring says why not. engine/optim/ builds each one (a closed registry keyed by `type`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from trainhub.job.base import Section, _shorthand

Beta = Annotated[float, Field(ge=0, lt=1)]


class Schedule(Section):
    warmup_steps: int = Field(0, ge=0)
    """Linear warmup from lr/warmup_steps to lr over this many optimizer steps."""
    decay: Literal["cosine", "linear", "constant"] = "cosine"
    """Shape of the decay after warmup."""
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    """The learning rate at the last step, as a fraction of the peak."""


class LrMultipliers(Section):
    """Per-group learning-rate multipliers: each group trains at (the schedule's lr) x its multiplier.
    The groups are decided by parameter name and shape (engine/optim/groups.py)."""

    embed: float = Field(1.0, gt=0, le=1000)
    """The input embedding (when tied to the head, the head's multiplier applies to it)."""
    head: float = Field(1.0, gt=0, le=1000)
    """The output head (lm_head), or the tied embedding-and-head matrix."""
    matrix: float = Field(1.0, gt=0, le=1000)
    """The hidden 2-D weights: attention and MLP projections (LoRA's A and B matrices included)."""
    vector: float = Field(1.0, gt=0, le=1000)
    """Norm gains, biases and any other weight with fewer than 2 dimensions."""


class AdamW(Section):
    type: Literal["adamw"] = "adamw"
    """AdamW with decoupled weight decay (torch.optim.AdamW; fused kernel on CUDA)."""
    lr: float = Field(3e-4, gt=0, le=1)
    """Peak learning rate (the schedule section shapes it over the run)."""
    betas: tuple[Beta, Beta] = (0.9, 0.95)
    """Coefficients of the running averages of the gradient and its square."""
    eps: float = Field(1e-8, gt=0)
    """Added to the denominator for numerical stability."""
    weight_decay: float = Field(0.0, ge=0)
    """Decoupled weight decay, applied to matrices only (embeddings, head and hidden matrices; not to norms,
    biases or other 1-D weights)."""
    lr_mult: LrMultipliers = LrMultipliers()
    """Learning-rate multipliers per parameter group (embed, head, matrix, vector); all 1 by default."""


class MuonAdamW(Section):
    """The AdamW that trains what Muon does not: the embedding, the head, vectors (and LoRA's matrices
    unless optim.lora is muon)."""

    lr: float | None = Field(None, gt=0, le=1)
    """Its peak learning rate; null: optim.lr. With update_scale match_rms_adamw both optimizers' updates
    have the same RMS, so one rate serves both (Moonlight, arXiv 2502.16982 sec. 2.2)."""
    betas: tuple[Beta, Beta] = (0.9, 0.95)
    """Coefficients of the running averages of the gradient and its square."""
    eps: float = Field(1e-8, gt=0)
    """Added to the denominator for numerical stability."""
    weight_decay: float = Field(0.0, ge=0)
    """Decoupled weight decay on the embedding and head (never on vectors)."""


class Muon(Section):
    type: Literal["muon"] = "muon"
    """Muon (Jordan et al. 2024; Moonlight, arXiv 2502.16982): the hidden matrices' momentum orthogonalised by
    Newton-Schulz iterations, the other parameters trained by AdamW in the same optimizer (engine/optim/muon.py)."""
    lr: float = Field(3e-4, gt=0, le=1)
    """Peak learning rate of the hidden matrices (and of the AdamW part unless adamw.lr is set). With the default
    update_scale an AdamW learning rate transfers unchanged, hence AdamW's default."""
    momentum: float = Field(0.95, ge=0, lt=1)
    """Momentum of the gradient running average (buffer = momentum x buffer + (1 - momentum) x gradient)."""
    nesterov: bool = True
    """Orthogonalise the Nesterov look-ahead (gradient blended toward the buffer by momentum) instead of the
    buffer itself."""
    ns_steps: int = Field(5, ge=1, le=20)
    """Newton-Schulz iterations. Five take singular values from ~1e-3 up to the plateau near 1."""
    ns_coefficients: Literal["quintic", "polar_express"] = "quintic"
    """The iteration's polynomial: quintic, Keller Jordan's fixed (3.4445, -4.775, 2.0315) every step (what
    torch.optim.Muon uses; singular values land in ~[0.7, 1.2]); polar_express, a different optimal polynomial
    per step (Amsel et al. 2025, arXiv 2505.16932), which lands closer to 1 in the same 5 steps (past 5 the last
    one repeats)."""
    update_scale: Literal["match_rms_adamw", "original", "none"] = "match_rms_adamw"
    """Shape-based factor on an m x n matrix's orthogonalised update: match_rms_adamw 0.2*sqrt(max(m, n))
    (Moonlight: the update's RMS becomes 0.2, AdamW's typical RMS, so AdamW learning rates and weight decay
    transfer, and the AdamW part can share optim.lr: the default for that reason); original
    sqrt(max(1, m/n)) (Keller Jordan's, which wants lr ~0.02); none: 1. Names as torch.optim.Muon's adjust_lr_fn."""
    weight_decay: float = Field(0.1, ge=0)
    """Decoupled weight decay of the hidden matrices (param x= 1 - lr x weight_decay). 0.1 as Moonlight and
    torch.optim.Muon: Moonlight found that without it weights and update RMS outgrow bf16's range on long runs."""
    eps: float = Field(1e-7, gt=0)
    """Floor on the norm the update is divided by before the iterations (a zero gradient stays zero)."""
    lora: Literal["adamw", "muon"] = "adamw"
    """Which optimizer trains LoRA's A (r x in) and B (out x r) matrices. adamw (default): orthogonalising A and B
    one by one does not orthogonalise their product's update B.A, which is what Muon's argument is about; with
    B zero at start, A's first gradients are zero and a normalised step of a rank-r matrix is all noise; and at
    r << in the Newton-Schulz cost buys little. muon: orthogonalise them too (cheap: an r x r Gram matrix)."""
    compile: bool = False
    """On CUDA, run each shape's Muon step (momentum, look-ahead, Newton-Schulz, decay, update) through
    torch.compile. Off by default: without it the element-wise passes run as two fused Triton kernels on CUDA,
    and compile measured slower on an H100 (152 ms a step on the Llama-3.2-1B matrices, against 94 ms eager
    and 89 ms fused; research/results/optimizers.md); a learning rate that changes every step also recompiles
    it. Kept for experiments; no effect on CPU."""
    adamw: MuonAdamW = MuonAdamW()
    """The AdamW that trains the embedding, head and vectors."""
    lr_mult: LrMultipliers = LrMultipliers()
    """Learning-rate multipliers per parameter group. All 1 by default: the recipe's embedding 2x and head 0.1x
    assume an untied head, while a tied embedding-and-head matrix counts as head here and would train at 0.1x
    as input and output alike (on the tiny tied Llama of the tests, 16 steps: loss 5.62 with 2x/0.1x against
    4.63 with 1/1). Untied models may set {embed: 2, head: 0.1} (config/presets/optim-muon.yaml says so)."""


class Lion(Section):
    type: Literal["lion"] = "lion"
    """Lion (Chen et al. 2023, arXiv 2302.06675): the sign of an interpolated momentum; one state per
    weight. Through pytorch-optimizer (pip install 'trainhub[optim]')."""
    lr: float = Field(1e-4, gt=0, le=1)
    """Peak learning rate. The paper: 3-10x smaller than AdamW's, since every coordinate moves by lr."""
    betas: tuple[Beta, Beta] = (0.9, 0.99)
    """beta1 blends momentum and gradient for the update's sign; beta2 is the momentum's own decay."""
    weight_decay: float = Field(0.0, ge=0)
    """Decoupled weight decay (matrices only; not vectors). The paper: 3-10x AdamW's, to keep lr x wd."""
    lr_mult: LrMultipliers = LrMultipliers()
    """Learning-rate multipliers per parameter group; all 1 by default."""


class Prodigy(Section):
    type: Literal["prodigy"] = "prodigy"
    """Prodigy (Mishchenko and Defazio 2023, arXiv 2306.06101): Adam whose step size d is estimated on the
    fly; lr is a multiplier on d, so 1.0 is the usual value. Through prodigyopt, the authors' package."""
    lr: float = Field(1.0, gt=0, le=100)
    """Peak multiplier on the estimated step size (the schedule shapes it); 1.0 as the authors advise."""
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    """Adam's coefficients of the running averages of the gradient and its square."""
    beta3: float | None = Field(None, ge=0, lt=1)
    """Decay of the step-size estimate's running sums; null: sqrt(beta2)."""
    eps: float = Field(1e-8, gt=0)
    """Added to the denominator for numerical stability."""
    weight_decay: float = Field(0.0, ge=0)
    """Decoupled weight decay (matrices only; not vectors)."""
    d0: float = Field(1e-6, gt=0)
    """Initial estimate of the step size d."""
    d_coef: float = Field(1.0, gt=0)
    """Multiplier on the estimate (below 1 for smaller steps)."""
    growth_rate: float | None = Field(None, gt=1)
    """Most d may grow by per step, as a factor; null: unbounded."""
    use_bias_correction: bool = False
    """Adam's bias correction in the step size (the authors: helps some fine-tuning)."""
    safeguard_warmup: bool = True
    """Leave lr out of the estimate's denominator: the authors advise it with a warmup, and schedule.warmup_steps
    is the usual companion, hence on (prodigyopt's default is off)."""
    lr_mult: LrMultipliers = LrMultipliers()
    """Must stay all 1: Prodigy estimates one step size for every parameter, and prodigyopt refuses groups
    with different learning rates."""

    @model_validator(mode="after")
    def _one_rate(self) -> Prodigy:
        if self.lr_mult != LrMultipliers():
            raise ValueError("prodigy estimates one step size for all parameters: optim.lr_mult must stay 1 "
                             "for every group (prodigyopt refuses groups with different learning rates)")
        return self


class Came(Section):
    type: Literal["came"] = "came"
    """CAME (Luo et al. 2023, arXiv 2307.02047): Adafactor's factored second moment (a row and a column per
    matrix instead of a full state) with a confidence-guided update. Through pytorch-optimizer."""
    lr: float = Field(2e-4, gt=0, le=1)
    """Peak learning rate."""
    betas: tuple[Beta, Beta, Beta] = (0.9, 0.999, 0.9999)
    """Momentum, the factored second moment's decay, and the confidence (instability) average's decay."""
    eps: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (1e-30, 1e-16)
    """Added to the squared gradient, and to the instability term."""
    clip_threshold: float = Field(1.0, gt=0)
    """Update RMS clip (Adafactor's d)."""
    weight_decay: float = Field(0.0, ge=0)
    """Decoupled weight decay (matrices only; not vectors)."""
    lr_mult: LrMultipliers = LrMultipliers()
    """Learning-rate multipliers per parameter group; all 1 by default."""


class ScheduleFreeAdamW(Section):
    type: Literal["schedule_free_adamw"] = "schedule_free_adamw"
    """Schedule-free AdamW (Defazio et al. 2024, arXiv 2405.15682): interpolates between an SGD-like iterate and
    its running average, so no decay schedule is needed (use schedule.decay: constant, with a warmup). The
    model is evaluated and saved at the average: the loop switches the optimizer around evaluation and the
    final save (engine/optim/hooks.py). Through schedulefree, the authors' package."""
    lr: float = Field(2.5e-3, gt=0, le=1)
    """Peak learning rate; schedule-free runs ~1-10x AdamW's (the authors' default)."""
    betas: tuple[Beta, Beta] = (0.9, 0.999)
    """beta1 is the interpolation between the iterate and its average; beta2 Adam's second-moment decay."""
    eps: float = Field(1e-8, gt=0)
    """Added to the denominator for numerical stability."""
    weight_decay: float = Field(0.0, ge=0)
    """Decoupled weight decay (matrices only; not vectors)."""
    r: float = Field(0.0, ge=0)
    """Polynomial weighting of the average by the step count (0: uniform)."""
    weight_lr_power: float = Field(2.0, ge=0)
    """The average weights each step by lr ** weight_lr_power (so warmup steps count less)."""
    lr_mult: LrMultipliers = LrMultipliers()
    """Learning-rate multipliers per parameter group; all 1 by default."""


class AdamW8bit(Section):
    type: Literal["adamw8bit"] = "adamw8bit"
    """AdamW with both states stored as 8-bit codes, block-wise quantized (blocks of 256 values, each with its
    own absmax: Dettmers et al. 2022, arXiv 2110.02861): 2 bytes of state per weight instead of 8. Through
    bitsandbytes (pip install 'trainhub[optim]')."""
    lr: float = Field(3e-4, gt=0, le=1)
    """Peak learning rate."""
    betas: tuple[Beta, Beta] = (0.9, 0.95)
    """Coefficients of the running averages of the gradient and its square."""
    eps: float = Field(1e-8, gt=0)
    """Added to the denominator for numerical stability."""
    weight_decay: float = Field(0.0, ge=0)
    """Decoupled weight decay (matrices only; not vectors)."""
    min_8bit_size: int = Field(4096, ge=1)
    """Tensors with fewer elements keep 32-bit states (bitsandbytes' default: quantizing tiny tensors saves
    nothing and costs accuracy)."""
    lr_mult: LrMultipliers = LrMultipliers()
    """Learning-rate multipliers per parameter group; all 1 by default."""


class Sophia(Section):
    type: Literal["sophia"] = "sophia"
    """SophiaG (Liu et al. 2023, arXiv 2305.14342): momentum divided by a diagonal Hessian estimate (Gauss-Newton-
    Bartlett: the squared gradient of the loss at labels sampled from the model), clipped per coordinate. The loop
    runs the estimate every hessian_every steps (engine/optim/hooks.py); native backend only."""
    lr: float = Field(2e-4, gt=0, le=1)
    """Peak learning rate (the reference's default; the paper's GPT-2 runs use 2e-4 to 6e-4)."""
    betas: tuple[Beta, Beta] = (0.965, 0.99)
    """Decay of the gradient's running average, and of the Hessian estimate's (per estimate, not per step)."""
    rho: float = Field(0.04, gt=0)
    """Clipping scale: each coordinate moves by lr x min(|m| / (rho x h), 1)."""
    weight_decay: float = Field(0.1, ge=0)
    """Decoupled weight decay (matrices only; not vectors); the reference's default 0.1."""
    hessian_every: int = Field(10, ge=1)
    """Steps between Hessian estimates (the paper's k = 10: the estimate costs one more forward and backward)."""
    lr_mult: LrMultipliers = LrMultipliers()
    """Learning-rate multipliers per parameter group; all 1 by default."""


# A union discriminated on `type`: each optimizer its own class and fields; the schedule is the job's
# `schedule` section, shared by all of them. New optimizers join this union and engine/optim's registry.
def _default_optim(value: Any) -> Any:
    """`optim: {lr: 0.01}` (no type) is AdamW, the default optimizer; `optim: adamw` is `{type: adamw}`."""
    value = _shorthand(value)
    return {"type": "adamw", **value} if isinstance(value, dict) and "type" not in value else value


Optim = Annotated[AdamW | Muon | Lion | Prodigy | Came | ScheduleFreeAdamW | AdamW8bit | Sophia,
                  Field(discriminator="type"), BeforeValidator(_default_optim)]
OPTIM_TYPES: tuple[str, ...] = ("adamw", "muon", "lion", "prodigy", "came", "schedule_free_adamw", "adamw8bit",
                                "sophia")
OPTIM_PACKAGES: dict[str, tuple[str, str]] = {
    "lion": ("pytorch_optimizer", "pytorch-optimizer"), "came": ("pytorch_optimizer", "pytorch-optimizer"),
    "prodigy": ("prodigyopt", "prodigyopt"), "schedule_free_adamw": ("schedulefree", "schedulefree"),
    "adamw8bit": ("bitsandbytes", "bitsandbytes")}
"""optim.type -> (the module its builder imports, the pip package); all in the `optim` extra. The rest are
torch's own or trainhub's."""
