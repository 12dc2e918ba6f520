"""Secrets (W&B key, HF token, ...) come from the environment and never reach the run folder.

trainhub reads no secret from a job file (the schema has no such field). Whatever a
backend prints or reports passes through `redact` before it is written to
console.log or metrics.jsonl: every value of an environment variable whose name
says it is a secret is replaced by ***.
"""

from __future__ import annotations

import os
import re

SECRET_NAME = re.compile(r"(TOKEN|API_KEY|SECRET|PASSWORD|ACCESS_KEY)", re.IGNORECASE)
NAMED = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY")
MIN_LENGTH = 6  # shorter values would redact ordinary words


def secret_values(env: dict[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    values = {v for k, v in env.items() if (k in NAMED or SECRET_NAME.search(k)) and len(v) >= MIN_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(text: str, values: list[str] | None = None) -> str:
    for value in secret_values() if values is None else values:
        text = text.replace(value, "***")
    return text
