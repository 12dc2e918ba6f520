"""Everything the loop needs before its first step, built once: `build(job, run_dir, device, precision)`.

The tokenizer, the datasets (packed rows when data.packing), the model on its device (compiled when the
job asks, on a GPU), the loss as a function of a micro-batch, the optimizer, the fp16 loss scaler, what
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
from trainhub.engine.fp8 import convert_to_fp8
from trainhub.engine.kernels import kernel_ops, resolve, use_kernels
from trainhub.engine.loss import cross_entropy
from trainhub.engine.model import ModelCount, build_tokenizer, count_model
from trainhub.engine.models import (
    build_model,
    compile_model,
    head_weight,
    hidden_states,
    path_of,
    set_offload,
)
from trainhub.engine.models.own import fuse_lora
from trainhub.engine.optim import build_optimizer
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

    @property
    def params(self) -> list[torch.nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    @property
    def epoch_items(self) -> int:
        """Items one epoch walks: packed rows, or examples."""
        return len(self.rows) if self.rows is not None else len(self.train_set)

    @property
    def tokens_per_step(self) -> int:
        return tokens_per_step(self.job)

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


def build(job: Job, run_dir: Path, device: torch.device, precision: Precision, notes: list[str]) -> Setup:
    tokenizer = build_tokenizer(job, run_dir)
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
    if job.train.precision.type == "fp8":  # before compile (and, under parallelize, before checkpointing and FSDP2)
        notes += convert_to_fp8(model, job.train.precision).lines()
    kernels, why = resolve(getattr(job.backend, "kernels", "auto"), device)
    ops = kernel_ops(kernels)
    if own:
        use_kernels(model, ops)  # before compile, so the compiled graph holds the chosen ops
        if kernels == "triton" and job.adapter.type == "lora":
            notes.append(f"kernels: {fuse_lora(model)} LoRA layers fused (engine/kernels/lora.py)")
    notes.append(f"kernels: {kernels} ({why})" + ("" if own or kernels == "none" else
                                                 "; transformers' model keeps its own norms, RoPE and MLP"))
    if getattr(job.backend, "compile", False):
        if device.type == "cuda":
            compile_model(model)  # in place: parameter names and module identity unchanged
        else:
            notes.append("CPU: backend.compile ignored (torch.compile is used on GPUs only)")
    if job.train.activation_offload:
        if device.type == "cuda":
            set_offload(model, True)
        else:
            notes.append("CPU: train.activation_offload ignored (activations are in host memory already)")
    # trainhub's own model on a GPU takes packed rows end to end with flash-attention's varlen kernel (no N x N mask)
    mask_kind = "varlen" if own and device.type == "cuda" else mask_kind_for(job.model.attention)
    optimizer = build_optimizer(job.optim, model, device)
    scaler = torch.amp.GradScaler("cuda") if precision.scaler else None
    items = len(rows) if rows is not None else len(data.train)
    return Setup(job=job, device=device, precision=precision, tokenizer=tokenizer, train_set=data.train,
                 eval_set=data.eval, rows=rows, model=model, loss_fn=make_loss(model, job.train.loss, len(tokenizer), ops.loss),
                 optimizer=optimizer, scaler=scaler, counts=count_model(model), total_steps=total_steps(job, items),
                 mask_kind=mask_kind)


CHUNKED_FROM_VOCAB = 32_000
"""train.loss auto: chunked from this vocabulary size up. Below it the logits are small (a 2k-vocab model's
are a few MB) and one matmul is simplest; above it they dominate activation memory."""


def make_loss(model: torch.nn.Module, choice: str, vocab: int, fused: str | None = None) -> LossFn:
    """The model's hidden states, then the head and cross-entropy through engine/loss.py (the loss seam).
    train.loss auto takes the kernels' fused loss (`fused`: triton, liger) when kernels are on."""
    impl = choice if choice != "auto" else fused or ("chunked" if vocab >= CHUNKED_FROM_VOCAB else "eager")

    def loss_fn(batch: dict, n_targets: torch.Tensor) -> torch.Tensor:
        hidden = hidden_states(model, batch)
        return cross_entropy(hidden, head_weight(model), batch["labels"], n_targets, impl=impl)

    return loss_fn
