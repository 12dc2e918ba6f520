"""A job file read as YAML with the line of every key, and the Problem / JobError every check reports.

The lowest layer of job loading: jobfile.py (validation, overrides, preflight) and compose.py (`extends:`)
both build on it, so neither imports the other's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Problem:
    """Something wrong with a job, said where it is."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class JobError(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


Path_ = tuple[str | int, ...]


def read_yaml(path: Path) -> tuple[dict, dict[Path_, int]]:
    """The file's mapping and {key path: 1-based line}."""
    if not path.is_file():
        raise JobError([Problem(str(path), "job file not found")])
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise JobError([Problem(where, f"not valid YAML: {getattr(err, 'problem', err)}")]) from None
    if not isinstance(raw, dict):
        raise JobError([Problem(str(path), "a job file must be a YAML mapping of sections")])
    lines: dict[Path_, int] = {}
    _collect_lines(node, (), lines)
    return raw, lines


def _collect_lines(node: yaml.Node | None, prefix: Path_, out: dict[Path_, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = (*prefix, key.value)
            out[here] = key.start_mark.line + 1
            _collect_lines(value, here, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[(*prefix, i)] = item.start_mark.line + 1
            _collect_lines(item, (*prefix, i), out)
