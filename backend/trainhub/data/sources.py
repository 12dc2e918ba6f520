"""Reading training files. A bad record stops the run before training, naming file:line.

.jsonl  one JSON object per line: {"text": str} for format text, {"messages": [...]} for messages.
.txt    format text only: documents separated by one or more blank lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

ROLES = ("system", "user", "assistant", "tool")


class DataError(ValueError):
    """A record that cannot be used, with its location."""


def read_texts(files: list[str]) -> Iterator[str]:
    for name in files:
        path = Path(name)
        if path.suffix == ".txt":
            yield from _txt_documents(path)
            continue
        for where, record in _jsonl(path):
            text = record.get("text")
            if not isinstance(text, str):
                raise DataError(f"{where}: expected a string field 'text' (format text), got keys {sorted(record)}")
            if text.strip():
                yield text


def read_conversations(files: list[str]) -> Iterator[tuple[str, list[dict]]]:
    """(location, messages) for every conversation; the location is file:line."""
    for name in files:
        path = Path(name)
        if path.suffix != ".jsonl":
            raise DataError(f"{path}: format messages needs .jsonl files with a 'messages' list per line")
        for where, record in _jsonl(path):
            messages = record.get("messages")
            if not isinstance(messages, list) or not messages:
                raise DataError(f"{where}: expected a non-empty list field 'messages', got keys {sorted(record)}")
            for i, m in enumerate(messages):
                if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                    raise DataError(f"{where}: messages[{i}] needs a role in {ROLES} and a string content, got {m!r:.120}")
            if not any(m["role"] == "assistant" for m in messages):
                raise DataError(f"{where}: conversation has no assistant turn, so nothing to learn from")
            if messages[0]["role"] == "assistant":
                raise DataError(f"{where}: conversation opens with an assistant turn; it needs a system or user "
                                f"turn before it")
            yield where, messages


def _jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{where}: malformed JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
            yield where, record


def _txt_documents(path: Path) -> Iterator[str]:
    doc: list[str] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                doc.append(line.rstrip("\n"))
            elif doc:
                yield "\n".join(doc)
                doc = []
    if doc:
        yield "\n".join(doc)
