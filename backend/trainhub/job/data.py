"""The `data:` section: the training and evaluation sources (files or Hugging Face datasets), their record
format and how records become sequences."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, model_validator

from trainhub.job.base import Section

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
