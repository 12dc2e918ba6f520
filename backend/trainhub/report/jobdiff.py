"""Resolved jobs side by side: every key of every run's job, and which keys differ between runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

MISSING = "—"


@dataclass
class KeyRow:
    key: str
    values: list[str]
    differs: bool


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'train': {'max_steps': 3}} -> {'train.max_steps': 3}; lists stay whole values."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def compare(jobs: list[dict]) -> list[KeyRow]:
    flat = [flatten(j) for j in jobs]
    keys: list[str] = []
    for f in flat:
        keys += [k for k in f if k not in keys]
    rows = []
    for key in keys:
        values = [_show(f[key]) if key in f else MISSING for f in flat]
        rows.append(KeyRow(key, values, differs=len(set(values)) > 1))
    return rows


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
