"""Rows of `<run_dir>/metrics.jsonl`, the same whatever backend wrote them.

Every row has `schema` (this file's SCHEMA_VERSION), `time` (unix seconds),
`run_id`, `event` and `step` (optimizer steps completed). The JSON Schema of
these rows is docs/metrics.schema.json (scripts/write_schemas.py regenerates it;
a test keeps it current).
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

SCHEMA_VERSION = 1

EXIT_CODES = {"completed": 0, "interrupted": 130, "failed": 1}
"""The exit code of a backend process that ends with each status: the one table of them (an end row
without a code takes its status's); trainhub.child names them EXIT_OK, EXIT_INTERRUPTED, EXIT_FAILED."""


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, use_attribute_docstrings=True)

    schema_version: int = Field(SCHEMA_VERSION, alias="schema")
    """Version of the row schema."""
    time: float = Field(default_factory=time.time)
    """Unix time the row was written."""
    run_id: str
    """Unique id of the run (one per launch)."""
    step: int = Field(ge=0)
    """Optimizer steps completed when the row was written."""


class Hardware(BaseModel):
    model_config = ConfigDict(extra="forbid")
    device: str
    """'cuda' or 'cpu'."""
    device_name: str
    """GPU model name, or the CPU's."""
    device_count: int
    """Devices used by this run."""
    peak_flops: float | None
    """Dense bf16 peak FLOP/s per device used for MFU; null where unknown (CPU)."""
    torch: str
    """torch version."""


class MethodStats(BaseModel):
    """What preference and RL methods measure besides the loss, for the logged steps (a field is null
    where the method has no such quantity)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
    reward_mean: float | None = None
    """RL: mean reward of the completions (the weighted sum over reward functions)."""
    reward_std: float | None = None
    """RL: standard deviation of that reward."""
    rewards: dict[str, float] = {}
    """RL: mean reward of each reward function, unweighted, by its name."""
    kl: float | None = None
    """Mean KL divergence of the policy from the reference (RL with a KL penalty; KTO's KL estimate)."""
    clip_ratio: float | None = None
    """RL: share of completion tokens whose importance ratio was clipped."""
    completion_length: float | None = None
    """RL: mean completion length in tokens."""
    rollout_tokens_per_s: float | None = None
    """RL: completion tokens sampled per second of rollout (native backend; the update's rate is tokens_per_s)."""
    rollout_share: float | None = None
    """RL: share of the steps' wall time spent sampling completions (native backend)."""
    chosen_reward: float | None = None
    """Preference: mean implicit reward of the chosen answers (beta x log-ratio to the reference)."""
    rejected_reward: float | None = None
    """Preference: mean implicit reward of the rejected answers."""
    reward_margin: float | None = None
    """Preference: mean of chosen minus rejected reward."""
    reward_accuracy: float | None = None
    """Preference: share of pairs whose chosen reward exceeds the rejected one."""


class StartRow(_Row):
    event: Literal["start"] = "start"
    backend: str
    """Backend that runs the job."""
    job_hash: str
    """Hash of the resolved job (job.json)."""
    job: dict[str, Any]
    """The resolved job."""
    hardware: Hardware
    params_total: int
    """Parameters in the model."""
    params_trainable: int
    """Parameters that receive updates."""
    flops_per_token: float
    """Training FLOPs per token at the job's sequence length (see docs/metrics.md)."""
    precision: str
    """Precision actually used (e.g. 'bf16 autocast', 'fp32')."""
    max_steps: int
    """Optimizer steps this run will take."""
    tokens_per_step: int
    """Upper bound on tokens per optimizer step (micro batch x accumulation x length)."""
    notes: list[str] = []
    """Plain statements about choices made for this run (e.g. 'CPU: fp32 instead of bf16')."""
    data: dict[str, int] = {}
    """Counts from loading the data (examples, truncated, dropped and why)."""
    resumed_from: str | None = None
    """The checkpoint this run continues from; null for a fresh run. `step` is then its step."""


class TrainRow(_Row):
    event: Literal["train"] = "train"
    loss: float | None
    """Mean loss over the logged steps' target tokens; null if any was non-finite."""
    lr: float
    """Learning rate used for the step."""
    grad_norm: float | None
    """Global gradient norm before clipping."""
    tokens: int
    """Tokens processed since the start of the run (padding excluded)."""
    tokens_per_s: float
    """Throughput since the previous train row."""
    mfu: float | None
    """Model FLOPs utilisation in [0, 1] since the previous train row; null without a known peak."""
    mem_gb: float | None
    """Peak memory so far in GB: CUDA allocated on a GPU, resident set size on CPU; several processes: the
    largest of the ranks'."""
    mem_gb_spread: float | None = None
    """Several processes: the largest rank's peak memory minus the smallest's, in GB; null for one process."""
    step_s_slowest: float | None = None
    """Several processes: the slowest rank's mean time per step since the previous row, its own forward and
    backward before it waits for the others (seconds); null for one process."""
    epoch: float
    """Passes over the training data so far."""
    nonfinite_skipped: int = 0
    """Steps so far whose update was dropped for a non-finite loss or gradient (train.on_nonfinite)."""
    method: MethodStats | None = None
    """Preference and RL quantities (dpo, orpo, kto, grpo); null for pretrain and sft."""


class EvalRow(_Row):
    event: Literal["eval"] = "eval"
    eval_loss: float
    """Mean loss over the eval set's target tokens."""
    perplexity: float
    """exp(eval_loss)."""
    eval_tokens: int
    """Target tokens evaluated."""
    method: MethodStats | None = None
    """Preference and RL quantities on the eval set; null for pretrain and sft."""


class CheckpointRow(_Row):
    event: Literal["checkpoint"] = "checkpoint"
    path: str
    """Folder of the complete checkpoint."""


class EndRow(_Row):
    event: Literal["end"] = "end"
    status: Literal["completed", "interrupted", "failed"]
    """How the run ended."""
    wall_s: float
    """Seconds from start to end."""
    tokens: int
    """Tokens processed in total."""
    final_loss: float | None
    """Loss of the last step; null if no step finished."""
    exit_code: int | None = None
    """Exit code of the backend process: as its writer knows it, else the code the status exits with
    (completed 0, interrupted 130, failed 1)."""
    nonfinite_skipped: int = 0
    """Steps whose update was dropped for a non-finite loss or gradient."""

    @model_validator(mode="after")
    def _exit_code_of_status(self) -> EndRow:
        if self.exit_code is None:
            self.exit_code = EXIT_CODES[self.status]
        return self


class ErrorRow(_Row):
    event: Literal["error"] = "error"
    message: str
    """What went wrong, in one line."""
    detail: str = ""
    """Traceback or other detail."""


class WarningRow(_Row):
    """Something went wrong beside the training, or in it but not enough to stop it, and training goes on: the
    hub writes one when a sink (wandb, tensorboard, prometheus) fails and is dropped for the rest of the launch;
    the native engine when train.loss_watch (action warn) sees the loss diverging."""

    event: Literal["warning"] = "warning"
    source: str
    """Who warns: the sink's name ('wandb', 'tensorboard', 'prometheus'), or 'loss_watch'."""
    message: str
    """What went wrong, in one line."""


Row = Annotated[StartRow | TrainRow | EvalRow | CheckpointRow | EndRow | ErrorRow | WarningRow,
                Field(discriminator="event")]
ROW_ADAPTER: TypeAdapter = TypeAdapter(Row)
