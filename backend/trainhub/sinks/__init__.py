"""Where rows go besides metrics.jsonl: Weights & Biases, TensorBoard, Prometheus.

Every backend writes the same metric log and the hub follows it, so a sink is written once, here, and
serves all of them. The hub hands each row of the current launch to `Sinks` (fanout.py), which feeds
the sinks the job names (`log.wandb`, `log.tensorboard`, `log.prometheus`) on a thread of its own: a
slow upload never holds up the console. The console (trainhub.progress.View) is fed directly, as before.

A sink is opened by the launch's start row and closed by its end row:

    open(start, run_dir, resumed)   start: the StartRow; resumed: the launch continues a checkpoint
    write(row)                      every later row of the launch (train, eval, checkpoint, error)
    close(end)                      the EndRow, or None when the launch ended without one

A sink that raises is dropped for the rest of the launch with one warning (on the console and as a
`warning` row in the metric log); training never waits on it or stops for it.

Under --resume a launch appends to the same run folder from the checkpoint's step, and a crash after
the last checkpoint means the earlier launch already logged some steps that will be logged again. Each
sink keeps those out in its own way (no step twice): wandb continues the same run id and skips steps it
already has; TensorBoard purges its events from the resumed step on (the later row counts, as in the
metric log); Prometheus holds only the present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from trainhub.job import LogSection
from trainhub.metrics.rows import EndRow, EvalRow, MethodStats, StartRow, TrainRow


class Sink(Protocol):
    name: str

    def open(self, start: StartRow, run_dir: Path, resumed: bool) -> None: ...

    def write(self, row) -> None: ...

    def close(self, end: EndRow | None) -> None: ...


class SinkError(Exception):
    """A sink cannot work (a missing package, no credentials): the message says what to do."""


def build_sinks(log: LogSection) -> list[Sink]:
    """The sinks `log` names, in a fixed order. Their packages are imported when they open."""
    from trainhub.sinks.prometheus import PrometheusSink
    from trainhub.sinks.tensorboard import TensorBoardSink
    from trainhub.sinks.wandb import WandbSink

    sinks: list[Sink] = []
    if log.wandb is not None:
        sinks.append(WandbSink(log.wandb))
    if log.tensorboard:
        sinks.append(TensorBoardSink())
    if log.prometheus is not None:
        sinks.append(PrometheusSink(log.prometheus))
    return sinks


def need(module: str, extra: str):
    """Import an optional package, or say which extra brings it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise SinkError(f"{module} is not installed: pip install 'trainhub[{extra}]' ({err})") from None


def scalars(row) -> dict[str, float]:
    """A train or eval row as the named numbers wandb and TensorBoard plot: `train/loss`, `eval/loss`,
    `train/reward_mean`, `train/rewards/<name>`, ... Nulls are left out."""
    if isinstance(row, TrainRow):
        out = {"train/loss": row.loss, "train/lr": row.lr, "train/grad_norm": row.grad_norm,
               "train/tokens": row.tokens, "train/tokens_per_s": row.tokens_per_s, "train/mfu": row.mfu,
               "train/mem_gb": row.mem_gb, "train/epoch": row.epoch}
        if row.nonfinite_skipped:
            out["train/nonfinite_skipped"] = row.nonfinite_skipped
        prefix = "train"
    elif isinstance(row, EvalRow):
        out = {"eval/loss": row.eval_loss, "eval/perplexity": row.perplexity, "eval/tokens": row.eval_tokens}
        prefix = "eval"
    else:
        return {}
    out.update(method_scalars(row.method, prefix))
    return {k: float(v) for k, v in out.items() if v is not None}


def method_scalars(method: MethodStats | None, prefix: str) -> dict[str, float]:
    if method is None:
        return {}
    out = {f"{prefix}/{k}": v for k, v in method.model_dump(exclude={"rewards"}).items() if v is not None}
    out.update({f"{prefix}/rewards/{name}": v for name, v in method.rewards.items()})
    return out
