"""trainhub's own folder on this machine: the data cache and the backends' environments live in it."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """$TRAINHUB_HOME, default $XDG_CACHE_HOME/trainhub (~/.cache/trainhub)."""
    if os.environ.get("TRAINHUB_HOME"):
        return Path(os.environ["TRAINHUB_HOME"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "trainhub"
