"""Writing and reading the JSON-lines metric log: one row per line, flushed per line."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import IO

from trainhub.metrics.rows import ROW_ADAPTER, _Row
from trainhub.secrets import redact, secret_values


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


DURABLE_EVENTS = frozenset({"start", "checkpoint", "error", "end"})
"""Rows fsynced as soon as they are written: the ones a resume or a post-mortem depends on."""
FSYNC_EVERY_S = 10.0
"""Other rows (train, eval) are fsynced at most this often: each row reaches the operating system at once
(a killed process loses none), and the disk within this many seconds. An fsync per logged step would cost
the training thread a disk round trip every step (0.09 ms on this machine's disk, milliseconds or more on
network file systems)."""


LEFT_OUT_WHERE_NULL = ("method", "mem_gb_spread", "step_s_slowest")


class MetricLog:
    """Appends rows to `<run_dir>/metrics.jsonl`. A reader following the file sees whole lines only.
    Secret values from the environment are redacted (trainhub.secrets)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self._secrets = secret_values()
        self._synced = time.monotonic()

    def write(self, row: _Row) -> None:
        # `method` and the several-process fields are left out where null, so pretrain/sft rows of one process
        # are the same whichever backend wrote them
        skip = {name for name in LEFT_OUT_WHERE_NULL if getattr(row, name, True) is None} or None
        self._file.write(redact(row.model_dump_json(by_alias=True, exclude=skip), self._secrets) + "\n")
        self._file.flush()  # one write(2) of the whole line: followers never see half a row
        now = time.monotonic()
        if row.event in DURABLE_EVENTS or now - self._synced >= FSYNC_EVERY_S:
            os.fsync(self._file.fileno())
            self._synced = now

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
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
