"""A split's records: every source read and checked, bad records stopped or counted, an eval set
held out, mixture weights applied. Nothing is left out without a count saying why.

`load_records(data, split, seed, method)` does, in order:

1. Read. Each train (or eval) path becomes its files (data/sources_files.py), each file its
   records (an hf source its rows, data/sources_hf.py), each record a typed record of its format (data/formats.py). With `format: auto` each
   file's first record decides its format; a note says which and from what fields.
2. Bad records. `on_error: error` raises the first, naming file:line (or file:row N) and the
   problem; `skip` counts it as `skipped_<reason>` and goes on. A blank text is no error but is
   counted too (`dropped_empty_text`). A file that cannot be read always raises.
3. Eval split. With `eval_fraction` f and no `data.eval`, round(f*n) records of each training
   source, picked with the job's seed, form the eval set and leave the training set. This happens
   before weights, so a record repeated by a weight can never land on both sides.
4. Weights (train only). A source of n records with weight w contributes round(w*n) examples:
   every record floor(w) times, plus a seeded sample without replacement of the remainder. The
   sample is drawn once, at load, so 0.5 means the same half every epoch; the loader's per-epoch
   shuffle then mixes the sources. (round: to the nearest whole number, halves up.)

Counts, as the start row shows them (with a train_ prefix): files, hf_sources, records (everything read, bad
ones included), skipped_<reason>, dropped_empty_text, held_out_for_eval, and per source i (when
there are several, or a weight) source<i>_records (after the hold-out) and source<i>_drawn.
So records = sum of source<i>_records + held_out_for_eval + every skipped and dropped count.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainhub.data import sources_hf
from trainhub.data.formats import (
    KIND,
    BadRecord,
    Chat,
    DataError,
    PreferencePair,
    PromptRecord,
    Record,
    Text,
    detect,
    parse,
)
from trainhub.data.sources_files import expand, read
from trainhub.job import METHOD_FORMATS, DataSection, DataSource

__all__ = ["DataError", "Records", "load_records", "read_conversations", "read_texts", "training_texts"]


@dataclass
class Records:
    items: list[Record]
    stats: dict[str, int]
    notes: list[str]
    """What format auto decided, file by file (one line per format)."""


def load_records(data: DataSection, split: str, seed: int, method: str | None = None,
                 bad: list[BadRecord] | None = None) -> Records:
    """The records of `split` ('train' or 'eval'); `method` (pretrain, sft) limits the formats accepted.
    `bad`, when given, receives every record skipped (under on_error: skip)."""
    if split not in ("train", "eval"):
        raise ValueError(f"split must be train or eval, not {split!r}")
    if method is not None and data.method_problem(method):
        raise DataError(data.method_problem(method))
    loader = _Loader(data, method, bad)
    if split == "eval" and data.eval:
        items = [r for source in data.eval for r in loader.source(source)]
        return Records(items, dict(loader.stats), loader.notes())
    if split == "eval" and data.eval_fraction is None:
        raise ValueError("no eval set: data.eval is empty and data.eval_fraction is not set")
    sources = [loader.source(s) for s in data.train]
    if data.eval_fraction is not None:
        parts = [_hold_out(records, data.eval_fraction, random.Random(f"eval:{seed}:{i}"))
                 for i, records in enumerate(sources)]
        held = [r for _, out in parts for r in out]
        loader.stats["held_out_for_eval"] = len(held)
        if split == "eval":
            if not held:
                raise DataError(f"data.eval_fraction={data.eval_fraction} holds out no record of the "
                                f"{sum(map(len, sources))} training records; raise it")
            return Records(held, dict(loader.stats), loader.notes())
        sources = [kept for kept, _ in parts]
    items: list[Record] = []
    weighted = len(data.train) > 1 or any(s.weight != 1 for s in data.train)
    for i, (source, records) in enumerate(zip(data.train, sources, strict=True)):
        drawn = _draw(records, source.weight, random.Random(f"weight:{seed}:{i}"))
        if weighted:
            loader.stats[f"source{i}_records"] = len(records)
            loader.stats[f"source{i}_drawn"] = len(drawn)
        items += drawn
    return Records(items, dict(loader.stats), loader.notes())


def training_texts(data: DataSection, seed: int) -> Iterator[str]:
    """The text of the training split, weights applied, to train a tokenizer on: documents, or the
    contents of every message (prompts and answers for preference and prompt records)."""
    for record in load_records(data, "train", seed).items:
        for value in [getattr(record, f) for f in _TEXT_FIELDS[type(record)]]:
            yield from [value] if isinstance(value, str) else (m["content"] for m in value)


def read_texts(paths: list[str]) -> Iterator[str]:
    """The documents of text files, in order; a bad record raises."""
    for record in load_records(DataSection(train=paths, format="text"), "train", seed=0).items:
        if isinstance(record, Text):
            yield record.text


def read_conversations(paths: list[str]) -> Iterator[tuple[str, list[dict]]]:
    """(where, messages) of every conversation in messages, sharegpt or alpaca files; a bad record raises."""
    for record in load_records(DataSection(train=paths), "train", seed=0, method="sft").items:
        if isinstance(record, Chat):
            yield record.where, record.messages


_TEXT_FIELDS = {Text: ("text",), Chat: ("messages",), PreferencePair: ("prompt", "chosen", "rejected"),
                PromptRecord: ("prompt",)}


class _Loader:
    """Reads sources for one split, counting as it goes and remembering what auto detected."""

    def __init__(self, data: DataSection, method: str | None, bad: list[BadRecord] | None = None):
        self.data, self.method, self.bad = data, method, bad
        self.accept = METHOD_FORMATS[method] if method else tuple(KIND)
        self.stats: Counter[str] = Counter()
        self.detected: dict[str, list] = {}  # format -> [first file, its fields, files]
        self.kinds: dict[str, str] = {}  # kind -> first file read as it

    def source(self, source: DataSource) -> list[Record]:
        if source.hf is not None:
            self.stats["hf_sources"] += 1
            return self.records(sources_hf.label(source), sources_hf.read(source))
        out: list[Record] = []
        for file in expand(source.path):
            self.stats["files"] += 1
            out += self.file(file)
        return out

    def file(self, path: Path) -> list[Record]:
        fmt = None
        if path.suffix == ".txt":
            fmt = None if self.data.format == "auto" else self.data.format
            if fmt not in (None, "text"):
                raise DataError(f"{path}: a .txt file holds plain text, not format {fmt}")
            fmt = self._decided(str(path), "text", "a .txt file")
        return self.records(str(path), read(path), fmt)

    def records(self, origin: str, rows: Iterator[tuple[str, Any]], fmt: str | None = None) -> list[Record]:
        """The records of one file or dataset (`origin`), from its (where, raw record) pairs."""
        data, out = self.data, []
        fmt = fmt or (None if data.format == "auto" else data.format)
        for where, raw in rows:
            self.stats["records"] += 1
            try:
                if isinstance(raw, BadRecord):
                    raise raw
                if fmt is None and isinstance(raw, dict):
                    fmt = self._detect(where, origin, raw)
                # fmt is None only before the file's first object, and parse refuses a non-object first
                record = parse(fmt or "text", raw, where, data.columns)
            except BadRecord as bad:
                if data.on_error == "error":
                    raise DataError(f"{bad} (data.on_error: skip leaves bad records out and counts them)") from None
                if self.bad is not None:
                    self.bad.append(bad)
                self.stats[f"skipped_{bad.reason}"] += 1
                continue
            if isinstance(record, Text) and not record.text.strip():
                self.stats["dropped_empty_text"] += 1
                continue
            out.append(record)
        return out

    def _detect(self, where: str, origin: str, raw: dict) -> str:
        own = set(self.data.columns.values())
        fields = {name for name, col in self.data.columns.items() if col in raw} | {k for k in raw if k not in own}
        fmt = detect(fields)
        seen = "fields " + ", ".join(sorted(raw))
        if fmt is None:
            raise DataError(f"{where}: format auto cannot tell the format from {seen}; set data.format (and "
                            f"data.columns to map your field names)")
        if fmt not in self.accept:
            raise DataError(f"{where}: format auto read this as {fmt} (from {seen}), which method {self.method} "
                            f"cannot use: it reads {', '.join(self.accept)}")
        return self._decided(origin, fmt, seen)

    def _decided(self, origin: str, fmt: str, seen: str) -> str:
        other = next(((k, f) for k, f in self.kinds.items() if k != KIND[fmt]), None)
        if other:
            raise DataError(f"{origin}: read as {fmt} ({KIND[fmt]} records) but {other[1]} holds {other[0]} "
                            f"records; one split holds one kind")
        self.kinds.setdefault(KIND[fmt], origin)
        if self.data.format == "auto":
            self.detected.setdefault(fmt, [origin, seen, 0])[2] += 1
        return fmt

    def notes(self) -> list[str]:
        out = []
        for fmt, (first, seen, n) in self.detected.items():
            more = f" (and {n - 1} more file{'s' if n > 2 else ''})" if n > 1 else ""
            out.append(f"data.format auto: {first}{more} read as {fmt}, from {seen}")
        return out


def _hold_out(records: list, fraction: float, rng: random.Random) -> tuple[list, list]:
    held = set(rng.sample(range(len(records)), _rounded(fraction * len(records))))
    return [r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held]


def _draw(records: list, weight: float, rng: random.Random) -> list:
    if not records:
        return []
    whole, extra = divmod(_rounded(weight * len(records)), len(records))
    picked = sorted(rng.sample(range(len(records)), extra))
    return records * whole + [records[i] for i in picked]


def _rounded(x: float) -> int:
    """To the nearest whole number, halves up (Python's round sends 2.5 to 2)."""
    return math.floor(x + 0.5)
