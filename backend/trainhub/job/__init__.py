"""The job schema: one closed, typed description of a training run.

Every backend reads the same `Job`. Each section is a pydantic model with
`extra="forbid"` (a misspelt key is an error, never ignored), a docstring under
every field (it becomes the field's description in docs/job.schema.json), and
bounds on every number. Every choice between kinds of things (backend, method,
adapter, optimizer, tokenizer) is a union discriminated on `type`; in YAML a
bare string is shorthand for `{type: <string>}` (`backend: native`).

The sections live here, the `method` sections in `job/methods.py` and the `optim` and `schedule`
sections in `job/optim.py` (importable from here too), the base they share in `job/base.py`. Loading YAML, `--set` overrides and error messages with file:line
live in `trainhub.jobfile`; this package only says what a valid job is.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from trainhub.job.base import Section, _shorthand
from trainhub.job.distributed import DistributedSection, FSDP2Options, Rendezvous  # noqa: F401
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

# ----------------------------------------------------------------------------- backend


class AutoBackend(Section):
    type: Literal["auto"] = "auto"
    """Pick the best backend that supports every feature the job asks for on this host."""


class NativeBackend(Section):
    type: Literal["native"] = "native"
    """trainhub's own engine: a plain PyTorch loop."""
    compile: bool = False
    """Wrap the model in torch.compile (GPU only; ignored with a notice on CPU)."""
    kernels: Literal["auto", "triton", "liger", "none"] = "auto"
    """Fused kernels for the own model's RMSNorm, RoPE and SwiGLU and for the head + cross-entropy (train.loss auto). triton: trainhub's (engine/kernels; needs a CUDA GPU); liger: Liger-Kernel's (pip install 'trainhub[liger]'); none: eager PyTorch; auto: triton on a CUDA GPU where Triton imports, else none."""


class NanoGPTBackend(Section):
    type: Literal["nanogpt"] = "nanogpt"
    """A checkout of karpathy/nanoGPT (or a fork): its train.py driven by a generated config file, unmodified."""
    repo: str | None = None
    """The checkout (the folder holding train.py, configurator.py and model.py); null: $NANOGPT_DIR."""
    compile: bool = True
    """nanoGPT's compile key: torch.compile the model. GPU only; on CPU it is off and the start row says so."""
    processes: int | None = Field(None, ge=1)
    """GPUs to train on, one process each (torchrun --standalone --nproc_per_node N); null: every visible GPU (CPU: 1)."""


class TrlBackend(Section):
    type: Literal["trl"] = "trl"
    """Hugging Face TRL's trainers (SFT, DPO, ORPO, KTO, GRPO family); needs pip install 'trainhub[trl]'."""


class UnslothBackend(Section):
    type: Literal["unsloth"] = "unsloth"
    """Unsloth's FastLanguageModel with TRL's trainers, in Unsloth's own environment (trainhub env setup unsloth); one GPU."""


class LlamaFactoryBackend(Section):
    type: Literal["llamafactory"] = "llamafactory"
    """LLaMA-Factory's run_exp, in an environment of its own (`trainhub env setup llamafactory`)."""


Backend = Annotated[AutoBackend | NativeBackend | NanoGPTBackend | TrlBackend | UnslothBackend | LlamaFactoryBackend,
                    Field(discriminator="type"), BeforeValidator(_shorthand)]

# Backends that later issues add. Naming one gives a clear "planned" error, not a puzzle.
PLANNED_BACKENDS: tuple[str, ...] = ()

# ----------------------------------------------------------------------------- model


class TrainTokenizer(Section):
    type: Literal["train"] = "train"
    """Train a byte-level BPE tokenizer on the job's training text and save it with the model."""
    vocab_size: int = Field(4096, ge=300, le=262_144)
    """Vocabulary size, special tokens included (256 byte symbols are always present)."""
    min_frequency: int = Field(2, ge=1)
    """A pair must occur at least this often to be merged."""


class PathTokenizer(Section):
    type: Literal["path"] = "path"
    """Use an existing tokenizer."""
    path: str
    """A local tokenizer folder or a hub id."""


Tokenizer = Annotated[TrainTokenizer | PathTokenizer, Field(discriminator="type"), BeforeValidator(_shorthand)]


class Architecture(Section):
    family: Literal["llama", "qwen2", "qwen3"] = "llama"
    """Model family: llama (no biases), qwen2 (biases on the q, k and v projections) or qwen3 (an RMSNorm on each
    query and key head, no biases); exported with the matching HF config class (LlamaConfig, Qwen2Config, Qwen3Config)."""
    hidden_size: int = Field(ge=8)
    """Width of the residual stream."""
    intermediate_size: int = Field(ge=8)
    """Width of the MLP."""
    num_layers: int = Field(ge=1)
    """Number of transformer blocks."""
    num_heads: int = Field(ge=1)
    """Attention (query) heads."""
    num_kv_heads: int | None = Field(None, ge=1)
    """Key/value heads for grouped-query attention; null means num_heads."""
    head_dim: int | None = Field(None, ge=2, multiple_of=2)
    """Width of each attention head; null means hidden_size / num_heads. Qwen3 sets it apart from hidden_size
    (Qwen3-0.6B: 16 heads of 128 in a 1024-wide stream); llama keeps hidden_size divisible by num_heads
    (transformers' LlamaConfig requires it). Even: rotary embeddings turn pairs of dimensions."""
    max_position_embeddings: int = Field(2048, ge=8)
    """Longest sequence the rotary embedding is configured for."""
    rope_theta: float = Field(10_000.0, gt=0)
    """Rotary embedding base."""
    tie_embeddings: bool = True
    """Share the input embedding with the output head."""
    tokenizer: Tokenizer = TrainTokenizer()
    """Where the tokenizer comes from; its size sets the vocabulary."""

    @model_validator(mode="after")
    def _heads_divide(self) -> Architecture:
        if (self.head_dim is None or self.family == "llama") and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        kv = self.num_kv_heads or self.num_heads
        if self.num_heads % kv:
            raise ValueError(f"num_heads {self.num_heads} is not divisible by num_kv_heads {kv}")
        return self


class GPT2Architecture(Section):
    family: Literal["gpt2"]
    """GPT-2 (the nanoGPT model): learned positions, pre-LayerNorm blocks, GELU MLP of 4 x n_embd, tied head.
    Exported as a transformers GPT2LMHeadModel."""
    n_layer: int = Field(ge=1)
    """Number of transformer blocks."""
    n_head: int = Field(ge=1)
    """Attention heads."""
    n_embd: int = Field(ge=8)
    """Width of the residual stream."""
    block_size: int = Field(1024, ge=8)
    """Positions the model has (its context length); nanoGPT trains on windows of exactly this many tokens."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on embeddings, attention and residual branches (0.0 for pretraining, as nanoGPT advises)."""
    bias: bool = False
    """Biases in the Linear and LayerNorm layers (GPT-2 had them; nanoGPT's default is without)."""
    vocab_size: int | None = Field(None, ge=1)
    """Rows of the embedding; null: the tokenizer's size. Larger pads it (nanoGPT pads GPT-2's 50,257 to 50,304,
    a multiple of 64, for speed); never smaller than the tokenizer."""
    tokenizer: Tokenizer = TrainTokenizer()
    """Where the tokenizer comes from; its size sets the vocabulary unless vocab_size pads it."""

    @model_validator(mode="after")
    def _heads_divide(self) -> GPT2Architecture:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        return self


def _default_family(value: Any) -> Any:
    """An architecture without `family` is a Llama (as before GPT-2 was added)."""
    return {"family": "llama", **value} if isinstance(value, dict) and "family" not in value else value


Init = Annotated[Architecture | GPT2Architecture, Field(discriminator="family"), BeforeValidator(_default_family)]


class ModelSection(Section):
    path: str | None = None
    """A local Hugging Face model folder or a hub id (nanogpt: a nanoGPT ckpt.pt, or a folder or run folder
    holding one, continued with its optimizer state). Exactly one of path and init."""
    init: Init | None = None
    """Build a model with random weights from this architecture (pretraining from nothing)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Dtype the weights are stored in. float32 master weights with bf16 autocast is classic mixed precision."""
    attention: Literal["sdpa", "eager", "flash_attention_2"] = "sdpa"
    """Attention implementation. sdpa: torch's scaled_dot_product_attention (it picks flash, cuDNN or
    memory-efficient kernels), and on the native engine's own model flash-attention's varlen kernel for packed
    rows on a GPU. eager and flash_attention_2 are transformers' implementations: under model.impl auto they
    take the native engine to transformers' model (`trainhub plan` says so); model.impl own refuses them."""
    impl: Literal["auto", "own", "hf"] = "auto"
    """native: which implementation trains the model. auto: trainhub's own decoder (engine/models) for llama,
    qwen2 and qwen3 in the forms it implements, transformers' for anything else; own: trainhub's or an error;
    hf: transformers' AutoModelForCausalLM (to compare, or for a feature the own model lacks). Other backends
    use their own stack's model."""
    trust_remote_code: bool = False
    """Allow a hub model to run its own Python code. Off unless you set it."""

    @model_validator(mode="after")
    def _one_source(self) -> ModelSection:
        if (self.path is None) == (self.init is None):
            raise ValueError("set exactly one of model.path (an existing model) and model.init (a new one)")
        return self


# ----------------------------------------------------------------------------- adapter (the method: job/methods.py)


class FullAdapter(Section):
    type: Literal["full"] = "full"
    """Train every weight."""


class LoraAdapter(Section):
    type: Literal["lora"] = "lora"
    """Low-rank adapters (through peft); the base weights stay frozen."""
    rank: int = Field(16, ge=1, le=4096)
    """Rank r of each adapter."""
    alpha: float = Field(32.0, gt=0)
    """Scale numerator: updates are scaled by alpha / rank."""
    dropout: float = Field(0.0, ge=0, lt=1)
    """Dropout on the adapter input."""
    targets: list[str] | Literal["all-linear"] = "all-linear"
    """Module names to adapt (e.g. [q_proj, v_proj]), or all-linear for every linear layer but the output head."""


class QloraAdapter(LoraAdapter):
    type: Literal["qlora"] = "qlora"  # type: ignore[assignment]
    """LoRA over base weights quantized to 4-bit NF4 while training (native: torchao, unsloth: bitsandbytes); the adapters train in the model's dtype. Needs a pretrained model.path."""


Adapter = Annotated[FullAdapter | LoraAdapter | QloraAdapter, Field(discriminator="type"),
                    BeforeValidator(_shorthand)]

# ----------------------------------------------------------------------------- data

# The canonical field names of each record format; data.columns maps them to a file's own names.
# trainhub.data.formats reads records by these names (docs: that module's docstring).
FORMAT_FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "messages": ("messages",),
    "sharegpt": ("conversations", "system"),
    "alpaca": ("instruction", "input", "output", "system"),
    "preference": ("prompt", "chosen", "rejected"),
    "prompt": ("prompt", "answer"),
}

# The formats each method reads: sharegpt and alpaca are converted to messages, so SFT takes all
# three; the preference methods read pairs, GRPO reads prompts.
METHOD_FORMATS: dict[str, tuple[str, ...]] = {
    "pretrain": ("text",), "sft": ("messages", "sharegpt", "alpaca"), "dpo": ("preference",),
    "orpo": ("preference",), "kto": ("preference",), "grpo": ("prompt",)}


def _sources(value: Any) -> Any:
    """`train: a.jsonl` means `train: [{path: a.jsonl}]`; so does a bare string inside the list."""
    items = [value] if isinstance(value, str | dict) else value
    if not isinstance(items, list):
        return value
    return [{"path": item} if isinstance(item, str) else item for item in items]


class DataSource(Section):
    path: str | None = None
    """A file, a folder or a glob (see data.train)."""
    hf: str | None = None
    """Instead of path: a Hugging Face dataset read with the datasets package: a Hub name (org/name; with no network it must be in the datasets cache), a local dataset folder, or a folder written by save_to_disk. A local folder is written with a leading ./, ../, / or ~. Needs pip install 'trainhub[datasets]'."""
    split: str = "train"
    """hf only: the split to read."""
    subset: str | None = None
    """hf only: the dataset's configuration (subset) name."""
    revision: str | None = None
    """hf only: a Hub branch, tag or commit to read; pin one for a reproducible run."""
    streaming: bool = False
    """hf only: read rows as they arrive instead of preparing the whole dataset on disk first; with take, only the first rows are read. A job streaming from the Hub is tokenized on every run (no content hash to cache on)."""
    take: int | None = Field(None, ge=1)
    """hf only: read only the first N rows of the split."""
    weight: float = Field(1.0, gt=0, le=1000)
    """Scales the examples drawn from this source per epoch (see data.train)."""

    @model_validator(mode="after")
    def _one_kind(self) -> DataSource:
        if (self.path is None) == (self.hf is None):
            raise ValueError("a data source has either path (files) or hf (a Hugging Face dataset)")
        if self.path is not None:
            extra = [k for k in ("split", "subset", "revision", "streaming", "take")  # a dumped job holds the defaults
                     if getattr(self, k) != type(self).model_fields[k].default]
            if extra:
                raise ValueError(f"{', '.join(extra)} apply to hf sources only, not to path {self.path}")
        return self

    def describe(self) -> str:
        """The source as the user wrote it: its path, or hf:NAME[split]."""
        if self.path is not None:
            return self.path
        subset = f"/{self.subset}" if self.subset else ""
        return f"hf:{self.hf}{subset}[{self.split}]"


class DataSection(Section):
    train: Annotated[list[DataSource], BeforeValidator(_sources)] = Field(min_length=1)
    """Training data: a path, or a list of paths, {path, weight} and {hf, split, subset, revision, streaming, take, weight} entries (hf: a Hugging Face dataset, see the fields of a source). A path is a file (.jsonl; .json holding a list of records; .parquet, needs pyarrow; .csv with a header row, flat records only; .txt, text only, documents separated by blank lines), a folder (its files of those types, sorted by name; subfolders are not read) or a glob (sorted; ** descends). weight (default 1) scales what a source gives each epoch: n records with weight w give round(w*n) examples, every record floor(w) times plus a sample of the rest drawn once with the job's seed (so 0.5 trains on the same half every epoch); it is relative to the source's own size, not a share of the mixture."""
    eval: Annotated[list[DataSource], BeforeValidator(_sources)] = []
    """Evaluation data, given like train (paths and hf entries), without weights. Empty, and no eval_fraction: no evaluation."""
    eval_fraction: float | None = Field(None, gt=0, lt=1)
    """Hold out round(eval_fraction*n) records of each training source as the eval set, chosen with the job's seed before weights apply, so they are never trained on. Only when data.eval is empty."""
    format: Literal["auto", "text", "messages", "sharegpt", "alpaca", "preference", "prompt"] = "auto"
    """text {text} (pretrain); messages {messages: [{role: system|user|assistant|tool, content}]}, sharegpt {conversations: [{from: human|gpt|system|tool|observation|function_call, value}], system?} and alpaca {instruction, input?, output, system?} (sft; sharegpt and alpaca become messages); preference {prompt, chosen, rejected} (strings or messages lists) (dpo, orpo, kto) and prompt {prompt, answer?, other fields kept for the rewards} (grpo). auto: each file's first record decides (messages, conversations, chosen+rejected, instruction+output, prompt, text, in that order; .txt is text), reported in the start row's notes."""
    columns: dict[str, str] = {}
    """The file's name for a canonical field, when it differs: {instruction: question, output: answer}. Top-level fields only."""
    max_length: int = Field(512, ge=8, le=1_048_576)
    """Tokens per sequence: the block length for text, the longest a conversation may be (see overlong)."""
    overlong: Literal["truncate", "drop", "error"] = "truncate"
    """A conversation longer than max_length: cut to max_length, left out, or stop naming its file:line. Counted as truncated or dropped_overlong. (Text is cut into blocks, so never over-long.)"""
    on_error: Literal["error", "skip"] = "error"
    """A bad record: error stops before training with its file:line (file:row N, from 0, for .json, .parquet and .csv) and the problem; skip leaves it out, counted by reason as skipped_<reason> in the start row's data. Reasons: malformed_json, malformed_csv, not_an_object, missing_field, wrong_type, empty_field, empty_conversation, unknown_role, no_assistant_turn, opens_with_assistant, identical_answers, invalid_utf8 (a line holding bytes that are not UTF-8). A file that cannot be read at all is always an error."""
    shuffle: bool = True
    """Shuffle the training examples each epoch (seeded by the job's seed)."""
    packing: bool = False
    """Pack conversations into rows of max_length (First-Fit-Decreasing) with positions and attention kept per conversation (docs/data.md); micro_batch_size then counts rows. Native backend, sft only."""
    template: Literal["chatml", "qwen2", "llama3", "mistral", "gemma", "plain"] | None = None
    """A built-in chat template to render conversations with, replacing the tokenizer's own; null uses the tokenizer's (a tokenizer trained by trainhub gets chatml)."""

    @model_validator(mode="after")
    def _consistent(self) -> DataSection:
        if self.eval and self.eval_fraction is not None:
            raise ValueError("set data.eval or data.eval_fraction, not both")
        if any(source.weight != 1 for source in self.eval):
            raise ValueError("data.eval sources take no weight: every eval record counts once")
        if self.packing and self.format == "text":
            raise ValueError("data.packing applies to conversations; text is already cut into full blocks")
        known = FORMAT_FIELDS.get(self.format) or tuple(dict.fromkeys(f for fs in FORMAT_FIELDS.values() for f in fs))
        for name in self.columns:
            if name not in known:
                raise ValueError(f"data.columns: '{name}' is not a field of format {self.format} "
                                 f"(its fields: {', '.join(known)})")
        if len(set(self.columns.values())) < len(self.columns):
            raise ValueError(f"data.columns maps two fields to the same column: {self.columns}")
        return self

    @property
    def has_eval(self) -> bool:
        return bool(self.eval) or self.eval_fraction is not None

    def method_problem(self, method: str) -> str | None:
        """Why `method` cannot read this format, or None (auto is checked file by file when data loads)."""
        accepted = METHOD_FORMATS[method]
        if self.format == "auto" or self.format in accepted:
            return None
        names = ", ".join(accepted[:-1]) + " or " + accepted[-1] if len(accepted) > 1 else accepted[0]
        return f"method {method} needs data.format {names}, not {self.format}"

    def map_paths(self, fn, hf_fn=None) -> DataSection:
        """A copy with every train and eval path passed through `fn`, and every hf name through `hf_fn` (str -> str)."""
        def one(s: DataSource) -> DataSource:
            if s.path is not None:
                return s.model_copy(update={"path": fn(s.path)})
            return s.model_copy(update={"hf": hf_fn(s.hf)}) if hf_fn else s

        return self.model_copy(update={"train": [one(s) for s in self.train], "eval": [one(s) for s in self.eval]})


# ----------------------------------------------------------------------------- optimizer: job/optim.py

# ----------------------------------------------------------------------------- precision: job/precision.py


# ----------------------------------------------------------------------------- train and log


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


class WandbLog(Section):
    project: str = "trainhub"
    """W&B project the run goes to."""
    entity: str | None = None
    """W&B team or user; null: the default entity of the API key."""
    name: str | None = None
    """Display name of the W&B run; null: the job's name."""
    tags: list[str] = []
    """Tags on the W&B run."""
    mode: Literal["online", "offline"] = "online"
    """online: stream to W&B (needs `wandb login` or WANDB_API_KEY); offline: write run_dir/wandb/ only, uploaded later with `wandb sync`."""


class PrometheusLog(Section):
    port: int = Field(ge=1, le=65535)
    """Serve the run's gauges at http://HOST:PORT/metrics while the run lives."""
    host: str = "127.0.0.1"
    """Address to listen on: 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)."""


def _true_is_defaults(value: Any) -> Any:
    """`wandb: true` means `wandb: {}` (every default)."""
    return {} if value is True else value


class LogSection(Section):
    console: Literal["auto", "rich", "plain", "none"] = "auto"
    """Console output: a live progress bar (rich), a line per logged step (plain), nothing, or auto (rich on a terminal)."""
    wandb: Annotated[WandbLog | None, BeforeValidator(_true_is_defaults)] = None
    """Send the run's rows to Weights & Biases (the wandb extra); true: every default. null: off."""
    tensorboard: bool = False
    """Write TensorBoard event files to run_dir/tensorboard (the tensorboard extra)."""
    prometheus: PrometheusLog | None = None
    """Serve step, loss, lr, tokens/s, MFU, memory, ETA and status as Prometheus gauges (the prometheus extra). null: off."""


GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q4_k_m", "q4_k_s", "q3_k_m", "q2_k", "q4_0")
"""The GGUF types trainhub writes (trainhub.export.gguf_write.QUANTS says how each is made)."""
GGUFType = Literal["f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q4_k_m", "q4_k_s", "q3_k_m", "q2_k",
                   "q4_0"]


class ExportSection(Section):
    merged: bool = True
    """LoRA and QLoRA: also write the adapter merged into the base weights, as a 16-bit Hugging Face model in run_dir/final (the adapter alone always goes to run_dir/adapter). false: the adapter only. A full fine-tune always writes final/."""
    gguf: list[GGUFType] = []
    """GGUF files to write after a completed run, into run_dir/export/<name>-<type>.gguf, as `trainhub export RUN --quant TYPE` does: f32, f16, bf16 and q8_0 by trainhub's converter, the k-quants (q6_k, q5_k_m, q5_k_s, q4_k_m, q4_k_s, q3_k_m, q2_k) and q4_0 by llama.cpp's quantizer (needs pip install 'trainhub[gguf]'). Families: llama, qwen2, qwen3, gpt2. Example: [q8_0, q4_k_m]."""
    verify: bool = True
    """Load each GGUF in llama.cpp and compare it with the trained model (tokenisation, next-token log-probs, greedy text); results in run_dir/export/export.json. A failed verification fails the run's export step, not the training."""

    @model_validator(mode="after")
    def _distinct(self) -> ExportSection:
        if len(set(self.gguf)) < len(self.gguf):
            raise ValueError(f"export.gguf names a type twice: {self.gguf}")
        return self


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
