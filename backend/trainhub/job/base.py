"""What every section of the job schema shares: closed (a misspelt key is an error), documented field
by field, and the shorthand of a bare string for `{type: <string>}`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


def _shorthand(value: Any) -> Any:
    """`backend: native` means `backend: {type: native}`."""
    return {"type": value} if isinstance(value, str) else value


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=True)
