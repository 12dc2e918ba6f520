"""The `log:` section: console output and the sinks (W&B, TensorBoard, Prometheus) that receive every row
besides the JSON-lines metric log."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from trainhub.job.base import Section


class WandbLog(Section):
    project: str = "trainhub"
    """W&B project the run goes to."""
    entity: str | None = None
    """W&B team or user; null: the default entity of the API key."""
    name: str | None = None
    """Display name of the W&B run; null: the job's name."""
    tags: list[str] = []
    """Tags on the W&B run."""
    mode: Literal["online", "offline"] = "online"
    """online: stream to W&B (needs `wandb login` or WANDB_API_KEY); offline: write run_dir/wandb/ only, uploaded later with `wandb sync`."""


class PrometheusLog(Section):
    port: int = Field(ge=1, le=65535)
    """Serve the run's gauges at http://HOST:PORT/metrics while the run lives."""
    host: str = "127.0.0.1"
    """Address to listen on: 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)."""


def _true_is_defaults(value: Any) -> Any:
    """`wandb: true` means `wandb: {}` (every default)."""
    return {} if value is True else value


class LogSection(Section):
    console: Literal["auto", "rich", "plain", "none"] = "auto"
    """Console output: a live progress bar (rich), a line per logged step (plain), nothing, or auto (rich on a terminal)."""
    wandb: Annotated[WandbLog | None, BeforeValidator(_true_is_defaults)] = None
    """Send the run's rows to Weights & Biases (the wandb extra); true: every default. null: off."""
    tensorboard: bool = False
    """Write TensorBoard event files to run_dir/tensorboard (the tensorboard extra)."""
    prometheus: PrometheusLog | None = None
    """Serve step, loss, lr, tokens/s, MFU, memory, ETA and status as Prometheus gauges (the prometheus extra). null: off."""
