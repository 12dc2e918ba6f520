"""Every optional extra in pyproject.toml brings a feature: each package it installs is used by trainhub's
code (imported, or looked for by name). An extra declared ahead of its feature promises what is not there."""

from __future__ import annotations

import re
import sys

from tests.conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ENVIRONMENTS = {"unsloth", "llamafactory"}  # markers: these backends install into environments of their own
TOOLS = {"dev"}


def used(module: str) -> bool:
    code = "\n".join(p.read_text() for p in (ROOT / "backend" / "trainhub").rglob("*.py"))
    return re.search(rf"^\s*(import|from) {module}\b|[\"']{module}[\"']", code, re.MULTILINE) is not None


def test_every_extra_brings_a_feature():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    unused = {}
    for extra, requirements in extras.items():
        if extra in ENVIRONMENTS | TOOLS:
            continue
        names = [re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("-", "_") for r in requirements]
        unused.update({f"{extra}: {name}": True for name in names if not used(name)})
    assert list(unused) == []
