"""The `train:` section: batching, length, precision, evaluation and checkpoint cadence, and the
`train.profile` window."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from trainhub.job.base import Section
from trainhub.job.precision import AutoPrecision, Precision


def _checkpointing_mode(value: Any) -> Any:
    """`grad_checkpointing: true/false` (the older boolean spelling) means full/none."""
    if isinstance(value, bool):
        return "full" if value else "none"
    return value


class ProfileSection(Section):
    start: int = Field(10, ge=1)
    """The first profiled step (1-based): after the compile and allocator warm-up."""
    steps: int = Field(2, ge=1, le=100)
    """How many consecutive optimizer steps the trace covers."""
    memory: bool = False
    """On a CUDA GPU, also record every allocation of the window: profile/memory.pickle (drop it on
    pytorch.org/memory_viz) and, in summary.json, the window's peak and the largest blocks alive at that peak,
    each with the line of code that allocated it. On CPU there is nothing to record (a note says so)."""


class LossWatch(Section):
    """A divergence watch on the train loss, against the run's own recent rows (engine/losswatch.py)."""

    window: int = Field(50, ge=5, le=10_000)
    """Train rows the baseline is taken over: the median loss of the last `window` rows that were not high,
    and their spread (1.4826 x their median absolute deviation). No verdict until that many rows are in (again
    after a resume)."""
    sigma: float = Field(6.0, gt=0, le=1000)
    """A row is high when its loss is more than sigma spreads above the baseline (the spread floored at 1% of
    the baseline, so the tiny noise of a flat curve does not make every wobble high)."""
    patience: int = Field(3, ge=1, le=1000)
    """High rows in a row that make a divergence."""
    action: Literal["warn", "stop"] = "warn"
    """warn: a warning row (source loss_watch) once per divergence, and training goes on; stop: an error row
    and the run ends (exit 1), the last checkpoint kept, as train.on_nonfinite stop does."""


class TrainSection(Section):
    micro_batch_size: int = Field(8, ge=1)
    """Sequences per forward/backward pass."""
    grad_accum: int = Field(1, ge=1)
    """Micro-batches per optimizer step. Loss is normalised over all target tokens of the step."""
    max_steps: int | None = Field(None, ge=1)
    """Optimizer steps to run. Exactly one of max_steps and epochs."""
    epochs: float | None = Field(None, gt=0)
    """Passes over the training data (fractions allowed). Exactly one of max_steps and epochs."""
    grad_clip: float | None = Field(1.0, gt=0)
    """Clip the global gradient norm to this value; null turns clipping off (the norm is still logged)."""
    precision: Precision = AutoPrecision()
    """Autocast precision on a GPU: auto (bf16 where supported), bf16, fp16 or fp32. CPU always runs fp32, and says so.
    fp8: FP8 matmuls in the Linear layers over bf16 autocast (native, GPU of compute capability 8.9+, compiled)."""
    grad_checkpointing: Annotated[Literal["none", "full", "selective"], BeforeValidator(_checkpointing_mode)] = "none"
    """Recompute activations in the backward pass to save memory. full: each transformer block is recomputed
    (only its input is kept); selective (native only): the outputs of matmuls and attention are kept and the
    cheap element-wise ops (norms, activations, rope) are recomputed; none: nothing is recomputed. true and
    false (the older spelling) mean full and none."""
    activation_offload: bool = False
    """native, on a GPU: keep the tensors saved for the backward pass in pinned host memory (with full
    checkpointing: each block's input) and copy them back when the backward needs them. For long sequences
    that would not fit otherwise; costs PCIe transfers."""
    loss: Literal["auto", "eager", "chunked"] = "auto"
    """native: how the head and cross-entropy run. eager: the [tokens, vocab] logits in one matmul, then the
    loss; chunked: a chunk of rows at a time, so the full logits never exist (at vocab 128k and 8k tokens,
    4.2 GB of fp32 logits become ~0.5 GB; engine/loss.py). auto: the fused kernel of backend.kernels when kernels are on (triton, liger), else chunked when the vocabulary is 32k or more."""
    eval_every: int | None = Field(None, ge=1)
    """Evaluate every N steps (and at the end) when eval data is given; null = only at the end."""
    eval_batches: int | None = Field(None, ge=1)
    """Limit each evaluation to this many micro-batches; null = the whole eval set."""
    save_every: int | None = Field(None, ge=1)
    """Write a checkpoint every N steps; null = only the final model."""
    keep_last: int = Field(2, ge=1)
    """Checkpoints to keep; older ones are deleted after a new one is complete."""
    log_every: int = Field(1, ge=1)
    """Write a train row to the metric log every N steps."""
    on_nonfinite: Literal["skip", "stop"] = "skip"
    """A step with a non-finite loss or gradient norm: skip drops its update and counts it; stop ends the run."""
    nonfinite_limit: int = Field(5, ge=1)
    """With skip: stop after this many non-finite steps in a row (the last good checkpoint is kept)."""
    loss_watch: LossWatch | None = None
    """native (pretrain, SFT): watch the train loss for a divergence against the run's own recent rows, and
    warn or stop (useful with fp8, whose curves can drift from bf16; config/presets/fp8.yaml turns it on).
    null: no watch. Non-finite losses are train.on_nonfinite's, not the watch's."""
    profile: ProfileSection | None = None
    """native: trace `steps` optimizer steps from step `start` with torch.profiler. The run folder gets
    profile/trace.json (open it in Perfetto or chrome://tracing) and profile/summary.json: the window's wall
    time, the GPU's busy time (the union of its kernels' intervals) and share, and the ops that took the most
    time; one console line says the share. null: no profiling."""

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TrainSection:
        if (self.max_steps is None) == (self.epochs is None):
            raise ValueError("set exactly one of train.max_steps and train.epochs")
        if self.profile is not None and self.max_steps is not None and self.profile.start > self.max_steps:
            raise ValueError(f"train.profile.start {self.profile.start} is past train.max_steps {self.max_steps}: "
                             f"the profile would never run")
        return self
