"""Writing and reading the JSON-lines metric log: one row per line, flushed per line."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import IO

from trainhub.metrics.rows import ROW_ADAPTER, _Row
from trainhub.secrets import redact, secret_values


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


class MetricLog:
    """Appends rows to `<run_dir>/metrics.jsonl`. A reader following the file sees whole lines only.
    Secret values from the environment are redacted (trainhub.secrets)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._secrets = secret_values()

    def write(self, row: _Row) -> None:
        # `method` is left out where null, so pretrain/sft rows are the same whichever backend wrote them
        skip = {"method"} if getattr(row, "method", True) is None else None
        self._file.write(redact(row.model_dump_json(by_alias=True, exclude=skip), self._secrets) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def read_rows(path: Path) -> list:
    """Every row of a metric log, validated (raises on a malformed row)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(ROW_ADAPTER.validate_python(json.loads(line)))
                except Exception as err:
                    raise ValueError(f"{path}:{n}: not a metric row: {err}") from None
    return rows
