"""The job schema: one closed, typed description of a training run.

Every backend reads the same `Job`. Each section is a pydantic model with
`extra="forbid"` (a misspelt key is an error, never ignored), a docstring under
every field (it becomes the field's description in docs/job.schema.json), and
bounds on every number. Every choice between kinds of things (backend, method,
adapter, optimizer, tokenizer) is a union discriminated on `type`; in YAML a
bare string is shorthand for `{type: <string>}` (`backend: native`).

`Job` is composed here from its sections, each in a module of its own and importable from here too:
`job/backend.py`, `job/model.py` (model and adapter), `job/methods.py`, `job/data.py`, `job/optim.py` (optim and
schedule), `job/train.py` (train and train.profile), `job/precision.py`, `job/distributed.py`, `job/log.py` and
`job/export.py`. The base they share is in `job/base.py`.
Loading YAML, `--set` overrides and error messages with file:line live in `trainhub.jobfile`; this package
only says what a valid job is.
"""

from __future__ import annotations

import hashlib
import json

from pydantic import Field, model_validator

from trainhub.job.backend import (  # noqa: F401  (the schema's names, importable from trainhub.job)
    PLANNED_BACKENDS,
    AutoBackend,
    Backend,
    LlamaFactoryBackend,
    NanoGPTBackend,
    NativeBackend,
    TrlBackend,
    UnslothBackend,
)
from trainhub.job.base import Section
from trainhub.job.data import FORMAT_FIELDS, METHOD_FORMATS, DataSection, DataSource  # noqa: F401
from trainhub.job.distributed import DistributedSection, FSDP2Options, Rendezvous  # noqa: F401
from trainhub.job.export import GGUF_TYPES, ExportSection, GGUFType  # noqa: F401
from trainhub.job.log import LogSection, PrometheusLog, WandbLog  # noqa: F401
from trainhub.job.methods import (  # noqa: F401  (the schema's names, importable from trainhub.job)
    DPO,
    GRPO,
    GRPO_ALGORITHMS,
    KTO,
    ORPO,
    SFT,
    Method,
    Pretrain,
    Reward,
)
from trainhub.job.model import (  # noqa: F401  (the schema's names, importable from trainhub.job)
    Adapter,
    Architecture,
    FullAdapter,
    GPT2Architecture,
    Init,
    LoraAdapter,
    ModelSection,
    PathTokenizer,
    QloraAdapter,
    Tokenizer,
    TrainTokenizer,
)
from trainhub.job.optim import (  # noqa: F401  (the schema's names, importable from trainhub.job)
    OPTIM_PACKAGES,
    OPTIM_TYPES,
    AdamW,
    AdamW8bit,
    Came,
    Lion,
    LrMultipliers,
    Muon,
    MuonAdamW,
    Optim,
    Prodigy,
    Schedule,
    ScheduleFreeAdamW,
    Sophia,
)
from trainhub.job.precision import (  # noqa: F401  (the schema's names, importable from trainhub.job)
    AutoPrecision,
    Bf16Precision,
    Fp8Precision,
    Fp16Precision,
    Fp32Precision,
    Precision,
)
from trainhub.job.train import LossWatch, ProfileSection, TrainSection  # noqa: F401

# ----------------------------------------------------------------------------- the job


class Job(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=128)
    """Run name: letters, digits, '.', '_' and '-'."""
    output_dir: str = "runs/{name}"
    """Run folder: metrics.jsonl, job.json, checkpoints and the final model land here. {name} is replaced."""
    seed: int = Field(0, ge=0)
    """Seeds model init, data order and dropout."""
    backend: Backend = AutoBackend()
    """Which training stack runs the job."""
    model: ModelSection
    """The model to train."""
    method: Method
    """The training objective."""
    adapter: Adapter = FullAdapter()
    """Which weights are trained."""
    data: DataSection
    """Training and evaluation data."""
    optim: Optim = AdamW()
    """The optimizer: its type, peak learning rate, per-group multipliers and its own fields."""
    schedule: Schedule = Schedule()
    """The learning-rate schedule over the run (warmup, decay), shared by every optimizer."""
    train: TrainSection
    """Batching, length, precision, evaluation and checkpoint cadence."""
    distributed: DistributedSection = DistributedSection()
    """How many processes train the job (torchrun) and how they share the model (DDP, FSDP2)."""
    log: LogSection = LogSection()
    """Console output and the sinks that receive every row besides the JSON-lines metric log, which is always written."""
    export: ExportSection = ExportSection()
    """What is written when training completes, beside the checkpoints."""

    @model_validator(mode="after")
    def _sections_agree(self) -> Job:
        problem = self.data.method_problem(self.method.type)
        if problem:
            raise ValueError(problem)
        if self.data.packing and self.method.type != "sft":
            raise ValueError("data.packing applies to sft conversations")
        if self.train.eval_every is not None and not self.data.has_eval:
            raise ValueError("train.eval_every is set but there is no eval data (data.eval or data.eval_fraction)")
        if self.method.type == "grpo":
            completions = self.train.micro_batch_size * self.train.grad_accum
            if completions % self.method.group_size:
                raise ValueError(f"grpo: train.micro_batch_size x train.grad_accum = {completions} completions per "
                                 f"step is not a multiple of method.group_size {self.method.group_size}")
        return self

    def run_dir(self) -> str:
        return self.output_dir.replace("{name}", self.name)

    def hash(self) -> str:
        """Stable hash of the resolved job: checkpoints and metric rows carry it."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
