"""Everything the loop needs before its first step, built once: `build(job, run_dir, device, precision)`.

The tokenizer, the datasets (packed rows when data.packing), the model on its device, the loss as a
module of a micro-batch wrapped for training (engine/parallelize.py: compile, FSDP2/DDP), the optimizer, the fp16 loss scaler, what
the model computes per token (for MFU), and the run's length in steps. The loop reads it as `s.<name>`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from trainhub.data.batches import Examples, Position, micro_batches
from trainhub.data.dataset import build_datasets
from trainhub.data.packing import mask_kind_for, pack_ffd, packed_micro_batches, packing_stats
from trainhub.engine.device import Precision
from trainhub.engine.dist import Dist
from trainhub.engine.fp8 import float8_all_gather, precompute_scales_after_steps
from trainhub.engine.kernels import kernel_ops, resolve, with_sdpa
from trainhub.engine.loss import cross_entropy
from trainhub.engine.model import ModelCount, build_tokenizer, count_model
from trainhub.engine.models import build_model, head_weight, hidden_states, path_of, set_offload
from trainhub.engine.optim import build_optimizer
from trainhub.engine.parallelize import parallelize
from trainhub.engine.schedule import total_steps
from trainhub.engine.state import TrainState
from trainhub.engine.step import injected_steps
from trainhub.job import Job
from trainhub.job.sizes import tokens_per_step

LossFn = Callable[[dict, torch.Tensor], torch.Tensor]


class Batches:
    """The training micro-batches from a data position on; `position` moves as they are drawn."""

    def __init__(self, make: Callable[[Position], Iterator[dict]], position: Position):
        self.position = position
        self._it = make(position)

    def __next__(self) -> dict:
        return next(self._it)


@dataclass
class Setup:
    job: Job
    device: torch.device
    precision: Precision
    tokenizer: object
    train_set: Examples
    eval_set: Examples | None
    rows: list[list[int]] | None
    """Packed rows of example indices (data.packing), else None."""
    model: torch.nn.Module
    loss_fn: LossFn
    """loss_fn(batch on the device, n_targets of the step) -> the micro-batch's share of the step's mean loss."""
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    counts: ModelCount
    total_steps: int
    mask_kind: str
    """How packed rows keep their documents apart (data/packing.py): bool/float masks, or varlen."""
    dist: Dist = Dist("single")
    """This process's place among the job's processes (engine/dist.py)."""

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @property
    def epoch_items(self) -> int:
        """Items one epoch walks: packed rows, or examples."""
        return len(self.rows) if self.rows is not None else len(self.train_set)

    @property
    def tokens_per_step(self) -> int:
        return tokens_per_step(self.job, self.dist.world)

    def batches(self, state: TrainState) -> Batches:
        job, pad = self.job, self.tokenizer.pad_token_id
        common = {"seed": job.seed, "shuffle": job.data.shuffle, "pad_id": pad}
        if self.rows is None:
            return Batches(lambda pos: micro_batches(self.train_set, job.train.micro_batch_size, position=pos,
                                                     **common), Position(state.epoch, state.index))
        return Batches(lambda pos: packed_micro_batches(
            self.train_set, self.rows, job.train.micro_batch_size, max_length=job.data.max_length,
            mask_kind=self.mask_kind, position=pos, **common), Position(state.epoch, state.index))

    def inject_nonfinite(self, loss_fn: LossFn, state: TrainState) -> LossFn:
        """Testing hook (TRAINHUB_INJECT_NONFINITE="3,4"): those steps' losses become NaN, to exercise
        train.on_nonfinite end to end. Unset, the loss function is returned as it is: no check in the step."""
        steps = injected_steps()
        if not steps:
            return loss_fn

        def poisoned(batch: dict, n_targets: torch.Tensor) -> torch.Tensor:
            loss = loss_fn(batch, n_targets)
            return loss * float("nan") if state.step + 1 in steps else loss

        return poisoned


def build(job: Job, run_dir: Path, device: torch.device, precision: Precision, notes: list[str],
          d: Dist = Dist("single")) -> Setup:
    with d.main_first():  # rank 0 fills the data cache, the others read it; rank 0 alone saves the tokenizer
        tokenizer = build_tokenizer(job, run_dir, save=d.main)
        data = build_datasets(job, tokenizer)
    notes += data.notes + (["data: tokenized examples read from the cache"] if data.cache == "hit" else [])
    rows = None
    if job.data.packing:  # deterministic, so a resumed run packs the same rows
        lengths = [len(x) for x in data.train.input_ids]
        rows = pack_ffd(lengths, job.data.max_length)
        stats = packing_stats(lengths, rows, job.data.max_length)
        data.train.stats.update(packed_rows=len(rows), packed_fill_permille=round(1000 * stats["fill"]))
    model = build_model(job, tokenizer).to(device)
    own = path_of(model) == "own"
    notes.append(f"model: {'trainhub' if own else 'transformers'} implementation")
    counts = count_model(model)  # before FSDP2 shards the parameters
    kernels, why = resolve(getattr(job.backend, "kernels", "auto"), device)
    notes.append(f"kernels: {kernels} ({why})" + ("" if own or kernels == "none" else
                                                 "; transformers' model keeps its own norms, RoPE and MLP"))
    sdpa = getattr(job.backend, "sdpa", "auto")
    if not own and sdpa != "auto":
        notes.append(f"backend.sdpa {sdpa} ignored: transformers' model keeps its own attention dispatch")
    ops = with_sdpa(kernel_ops(kernels), sdpa if own else "auto", device, notes)
    if job.train.activation_offload:
        if device.type == "cuda":
            set_offload(model, True)
        else:
            notes.append("CPU: train.activation_offload ignored (activations are in host memory already)")
    # fp8 -> kernels -> activation checkpointing -> compile -> FSDP2/DDP, then the optimizer over what they made
    loss_fn = parallelize(make_loss(model, job.train.loss, len(tokenizer), ops.loss), job, d, device, notes, ops)
    # trainhub's own model on a GPU takes packed rows end to end with flash-attention's varlen kernel (no N x N mask)
    mask_kind = "varlen" if own and device.type == "cuda" else mask_kind_for(job.model.attention)
    optimizer = build_optimizer(job.optim, model, device)
    if float8_all_gather(job.train.precision, d.strategy):
        precompute_scales_after_steps(optimizer, model)
    scaler = torch.amp.GradScaler("cuda") if precision.scaler else None
    items = len(rows) if rows is not None else len(data.train)
    return Setup(job=job, device=device, precision=precision, tokenizer=tokenizer, train_set=data.train,
                 eval_set=data.eval, rows=rows, model=model, loss_fn=loss_fn, optimizer=optimizer, scaler=scaler,
                 counts=counts, total_steps=total_steps(job, items, d.world), mask_kind=mask_kind, dist=d)


CHUNKED_FROM_VOCAB = 32_000
"""train.loss auto: chunked from this vocabulary size up. Below it the logits are small (a 2k-vocab model's
are a few MB) and one matmul is simplest; above it they dominate activation memory."""


class LossModule(torch.nn.Module):
    """The model's hidden states, then the head and cross-entropy through engine/loss.py (the loss seam), as
    one module: what engine/parallelize.py wraps, so the head runs inside FSDP2's and DDP's forward."""

    def __init__(self, model: torch.nn.Module, impl: str):
        super().__init__()
        self.model, self.impl = model, impl

    def forward(self, batch: dict, n_targets: torch.Tensor) -> torch.Tensor:
        hidden = hidden_states(self.model, batch)
        return cross_entropy(hidden, head_weight(self.model), batch["labels"], n_targets, impl=self.impl)


def make_loss(model: torch.nn.Module, choice: str, vocab: int, fused: str | None = None) -> LossModule:
    """train.loss auto takes the kernels' fused loss (`fused`: triton, liger) when kernels are on, else chunked
    from a 32k vocabulary, else eager."""
    impl = choice if choice != "auto" else fused or ("chunked" if vocab >= CHUNKED_FROM_VOCAB else "eager")
    return LossModule(model, impl)
