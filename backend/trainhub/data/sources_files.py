"""Files: which ones a data path names, and their records, each with where it came from.

A path is a file, a folder (its supported files, sorted by name, hidden ones and subfolders left
out, so a dataset's test/ folder never leaks into training) or a glob (sorted; `**` recurses).

    .jsonl    one JSON value per line                       where: file:LINE (from 1; blank lines skipped)
    .json     one JSON list of records                      where: file:row N (index in the list, from 0)
    .parquet  a table; nested columns (messages) allowed    where: file:row N (from 0)   needs pyarrow
    .csv      a header row, then one record per row         where: file:row N (from 0, header not counted)
    .txt      plain text, documents separated by blank lines  where: file:LINE of the document's first line

A record that cannot be parsed (a malformed JSON line, a CSV row with more cells than the header, a
line holding bytes that are not UTF-8) comes out as a `BadRecord` in place of the record, so the
loader can count it and go on. A file that cannot be read at all raises `DataError`: there is
nothing to count. Text is decoded with errors="surrogateescape", so one bad byte spoils only the
record it is in: each record's text is checked for the escaped bytes (invalid_utf8, naming its line
and column).

CSV is read with the standard library, every value a string exactly as written: pyarrow's type
inference would turn "007" into 7 and "NA" into null, which is wrong for text. Parquet keeps its
own types.
"""

from __future__ import annotations

import csv
import glob
import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainhub.data.formats import BadRecord, DataError

SUFFIXES = (".jsonl", ".json", ".parquet", ".csv", ".txt")
PYARROW_MISSING = "reading .parquet files needs pyarrow: pip install pyarrow"


def expand(path: str) -> list[Path]:
    """The files `path` names, in reading order; DataError if it names none."""
    if glob.has_magic(path):
        found = sorted(Path(p) for p in glob.glob(path, recursive=True))
        files = [p for p in found if p.is_file() and p.suffix in SUFFIXES]
        if not files:
            raise DataError(f"no {_types()} file matches {path}")
        return files
    p = Path(path)
    if p.is_dir():
        files = sorted(c for c in p.iterdir() if c.is_file() and c.suffix in SUFFIXES and not c.name.startswith("."))
        if not files:
            raise DataError(f"folder holds no {_types()} file: {path}")
        return files
    if not p.is_file():
        raise DataError(f"file not found: {path}")
    if p.suffix not in SUFFIXES:
        raise DataError(f"unsupported file type '{p.suffix}' (use {_types()}): {path}")
    return [p]


def check(path: str, fmt: str) -> str | None:
    """What stops `path` from being read as `fmt`, found without reading it (for preflight)."""
    try:
        files = expand(path)
    except DataError as err:
        return str(err)
    if any(f.suffix == ".parquet" for f in files) and importlib.util.find_spec("pyarrow") is None:
        return PYARROW_MISSING
    txt = next((f for f in files if f.suffix == ".txt"), None)
    if txt is not None and fmt not in ("text", "auto"):
        return f"a .txt file holds plain text, not format {fmt}: {txt}"
    return None


def read(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, record) for every record of one file; a record that cannot be parsed is a BadRecord."""
    reader = {".jsonl": _jsonl, ".json": _json, ".parquet": _parquet, ".csv": _csv, ".txt": _txt}[path.suffix]
    yield from reader(path)


TEXT = {"encoding": "utf-8-sig", "errors": "surrogateescape"}
"""How text files are opened: a byte that is not UTF-8 becomes a lone surrogate (U+DC80..U+DCFF) that
`_not_utf8` finds, instead of a UnicodeDecodeError that would refuse the whole file."""
_ESCAPED = re.compile("[\udc80-\udcff]")


def _not_utf8(text: str, line: int | None = None) -> str | None:
    """'not UTF-8 text (byte 0xe9 at line L column C)' for the first undecodable byte of `text`
    (starting at file line `line`), or None."""
    m = _ESCAPED.search(text)
    if m is None:
        return None
    at = f"column {m.start() - text.rfind(chr(10), 0, m.start())}"
    if line is not None:
        at = f"line {line + text.count(chr(10), 0, m.start())} {at}"
    return f"not UTF-8 text (byte 0x{ord(m.group()) - 0xDC00:02x} at {at})"


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _types() -> str:
    return ", ".join(SUFFIXES[:-1]) + " or " + SUFFIXES[-1]


def _jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with open(path, **TEXT) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            bad = _not_utf8(line)
            if bad:
                yield where, BadRecord(where, "invalid_utf8", bad)
                continue
            try:
                yield where, json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as err:
                yield where, BadRecord(where, "malformed_json", f"malformed JSON ({err.msg}: column {err.colno})")


def _json(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        text = path.read_text(**TEXT)
        data = json.loads(text)
    except json.JSONDecodeError as err:
        hint = "; one JSON value per line is JSON lines: name the file .jsonl" if err.msg == "Extra data" else ""
        raise DataError(f"{path}: not valid JSON ({err.msg}: line {err.lineno} column {err.colno}){hint}") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    for i, record in enumerate(data):
        where = f"{path}:row {i}"
        bad = next((b for b in map(_not_utf8, _strings(record)) if b), None)
        yield where, BadRecord(where, "invalid_utf8", bad) if bad else record


def _parquet(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: {PYARROW_MISSING}") from None
    i = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            yield f"{path}:row {i}", record
            i += 1


def _csv(path: Path) -> Iterator[tuple[str, Any]]:
    csv.field_size_limit(2**31 - 1)  # the default, 128 KiB per cell, is shorter than many documents
    with open(path, newline="", **TEXT) as f:
        reader = csv.DictReader(f)
        bad = _not_utf8(",".join(reader.fieldnames or []), 1)
        if bad:
            raise DataError(f"{path}: the header row is {bad}")
        first = reader.line_num + 1
        for i, row in enumerate(reader):
            where = f"{path}:row {i}"
            bad = next((b for b in (_not_utf8(v, first) for v in _strings(list(row.values()))) if b), None)
            first = reader.line_num + 1
            if bad:
                yield where, BadRecord(where, "invalid_utf8", bad)
            elif None in row:  # DictReader files cells beyond the header under the key None
                yield where, BadRecord(where, "malformed_csv", f"{len(row) - 1 + len(row[None])} cells, but the "
                                                               f"header names {len(row) - 1} columns")
            else:
                yield where, {k: v for k, v in row.items() if v is not None}  # a short row lacks its last cells


def _txt(path: Path) -> Iterator[tuple[str, Any]]:
    doc: list[str] = []
    start = 0

    def record(where: str, text: str):
        bad = _not_utf8(text, start)
        return BadRecord(where, "invalid_utf8", bad) if bad else {"text": text}

    with open(path, **TEXT) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                start = start or n
                doc.append(line.rstrip("\n"))
            elif doc:
                yield f"{path}:{start}", record(f"{path}:{start}", "\n".join(doc))
                doc, start = [], 0
    if doc:
        yield f"{path}:{start}", record(f"{path}:{start}", "\n".join(doc))
