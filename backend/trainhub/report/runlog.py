"""One run folder read back from its metric log: its launches, the rows that count, and a summary.

A run folder holds one run and every --resume of it: each launch begins with a start row. A step logged
twice (a crash after the last checkpoint, then a resume) counts once, its later row (docs/metrics.md).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from trainhub.metrics.rows import ROW_ADAPTER, EndRow, EvalRow, StartRow, TrainRow


class NotARun(Exception):
    pass


@dataclass
class RunLog:
    path: Path
    """The run folder."""
    rows: list = field(default_factory=list)
    bad_lines: int = 0
    """Lines that are not a metric row (a line still being written by a live run is not read at all)."""

    @property
    def starts(self) -> list[StartRow]:
        return [r for r in self.rows if isinstance(r, StartRow)]

    @property
    def first(self) -> StartRow | None:
        return self.starts[0] if self.starts else None

    @property
    def last_start(self) -> StartRow | None:
        return self.starts[-1] if self.starts else None

    @property
    def job(self) -> dict:
        return self.last_start.job if self.last_start else {}

    @property
    def name(self) -> str:
        return str(self.job.get("name") or self.path.name)

    @property
    def end(self) -> EndRow | None:
        """The end row of the last launch; None while it runs (or if its hub was killed)."""
        since = self.rows.index(self.last_start) if self.last_start else 0
        ends = [r for r in self.rows[since:] if isinstance(r, EndRow)]
        return ends[-1] if ends else None

    @property
    def status(self) -> str:
        if not self.rows:
            return "empty"
        return self.end.status if self.end else "unfinished"

    def train(self) -> list[TrainRow]:
        return _later_wins([r for r in self.rows if isinstance(r, TrainRow)])

    def evals(self) -> list[EvalRow]:
        return _later_wins([r for r in self.rows if isinstance(r, EvalRow)])

    def elapsed(self) -> dict[int, float]:
        """Seconds of training time at each row (by its index in `rows`): launches laid end to end, the
        pauses between them left out."""
        out, offset, t0, last = {}, 0.0, None, None
        for i, row in enumerate(self.rows):
            if isinstance(row, StartRow):
                if t0 is not None and last is not None:
                    offset += last - t0
                t0 = row.time
            if t0 is None:
                t0 = row.time
            last = row.time
            out[i] = offset + row.time - t0
        return out

    def duration(self) -> float:
        elapsed = self.elapsed()
        return max(elapsed.values()) if elapsed else 0.0

    def started(self) -> float | None:
        return self.rows[0].time if self.rows else None


def _later_wins(rows: list) -> list:
    by_step = {}
    for row in rows:
        by_step[row.step] = row
    return [by_step[s] for s in sorted(by_step)]


def load(path: Path) -> RunLog:
    """The run in folder `path` (or the metric log `path`)."""
    path = Path(path)
    log = path if path.is_file() else path / "metrics.jsonl"
    if not log.is_file():
        raise NotARun(f"{path}: no metrics.jsonl")
    run = RunLog(log.parent)
    data = log.read_bytes()
    for line in data[: data.rfind(b"\n") + 1].splitlines():  # whole lines only: a live run may be mid-write
        if line.strip():
            try:
                run.rows.append(ROW_ADAPTER.validate_json(line))
            except ValueError:
                run.bad_lines += 1
    return run


def find_runs(root: Path, depth: int = 3) -> list[Path]:
    """Run folders (holding a metrics.jsonl) at `root` or up to `depth` folders below it, oldest first."""
    root = Path(root)
    found = [p.parent for d in range(depth + 1) for p in root.glob("/".join(["*"] * d + ["metrics.jsonl"]))]
    return sorted(set(found), key=lambda p: (p / "metrics.jsonl").stat().st_mtime)


@dataclass
class Summary:
    name: str
    backend: str
    method: str
    status: str
    step: int
    max_steps: int | None
    final_loss: float | None
    eval_loss: float | None
    tokens: int
    tokens_per_s: float | None
    mfu: float | None
    mem_gb: float | None
    started: float | None
    duration_s: float


def summarize(run: RunLog) -> Summary:
    """The numbers `trainhub runs` and the report's table show. tokens/s and MFU: the median over the
    train rows after each launch's first (which carries start-up and compilation)."""
    start, train, evals = run.last_start, run.train(), run.evals()
    steady, first_of_launch = [], True
    for row in run.rows:
        if isinstance(row, StartRow):
            first_of_launch = True
        elif isinstance(row, TrainRow):
            if not first_of_launch:
                steady.append(row)
            first_of_launch = False
    steady = steady or [r for r in run.rows if isinstance(r, TrainRow)]
    tps = [r.tokens_per_s for r in steady]
    mfu = [r.mfu for r in steady if r.mfu is not None]
    mem = [r.mem_gb for r in train if r.mem_gb is not None]
    end = run.end
    final = end.final_loss if end is not None and end.final_loss is not None else (train[-1].loss if train else None)
    job = run.job
    method = job.get("method", {})
    return Summary(
        name=run.name, backend=start.backend if start else "?",
        method=method.get("type", "?") if isinstance(method, dict) else str(method),
        status=run.status, step=max((r.step for r in run.rows), default=0),
        max_steps=start.max_steps if start else None, final_loss=final,
        eval_loss=evals[-1].eval_loss if evals else None,
        tokens=max([r.tokens for r in train] + [end.tokens if end else 0]),
        tokens_per_s=statistics.median(tps) if tps else None, mfu=statistics.median(mfu) if mfu else None,
        mem_gb=max(mem) if mem else None, started=run.started(), duration_s=run.duration())


TABLE = ("name", "backend", "method", "status", "steps", "final loss", "tokens/s", "MFU", "started", "duration")
"""The columns of `trainhub runs` (after the run's folder) and of the job server's table."""


def table_row(s: Summary) -> list[str]:
    """A run's cells under TABLE, as `trainhub runs` prints them."""
    return [s.name, s.backend, s.method, s.status, f"{s.step}/{s.max_steps}" if s.max_steps is not None else str(s.step),
            "-" if s.final_loss is None else f"{s.final_loss:.4f}",
            "-" if s.tokens_per_s is None else f"{s.tokens_per_s:,.0f}",
            "-" if s.mfu is None else f"{s.mfu:.1%}", fmt_time(s.started), fmt_duration(s.duration_s)]


def fmt_duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def fmt_time(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "-"
