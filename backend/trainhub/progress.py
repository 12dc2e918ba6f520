"""The console view of a run, fed by metric rows: a live bar on a terminal, a line per row elsewhere."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def _fmt_tps(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


class View:
    """Renders rows. `mode` is rich (live bar), plain (lines) or none."""

    def __init__(self, mode: str, console: Console | None = None):
        self.console = console or Console(highlight=False, soft_wrap=True)
        if mode == "auto":
            mode = "rich" if self.console.is_terminal else "plain"
        self.mode = mode
        self.progress: Progress | None = None
        self.task = None
        # Rows (main thread) and the backend's output (reader thread) print concurrently; rich imports
        # parts of itself lazily on first print, which two threads must not race into.
        self._lock = threading.RLock()
        # A backend child says its error on stderr ("error: ...", kept in console.log) and writes it as an
        # error row: whichever arrives first is shown, the other not.
        self._errors: set[str] = set()

    def __enter__(self) -> View:
        if self.mode == "rich":
            self.progress = Progress(
                TextColumn("[bold]step"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[stats]}"),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=self.console,
                transient=False)
            self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)

    def line(self, text: str) -> None:
        """A line of the backend's own output."""
        if self.mode != "none":
            with self._lock:
                if text.startswith("error: "):
                    if text in self._errors:
                        return
                    self._errors.add(text)
                (self.progress.console if self.progress else self.console).print(text, markup=False, highlight=False)

    def row(self, row) -> None:
        if self.mode == "none":
            return
        with self._lock:
            self._row(row)

    def _row(self, row) -> None:
        event = row.event
        if event == "start":
            hw = row.hardware
            self.line(f"run {row.run_id}: {row.backend} on {hw.device_name} ({hw.device}), {row.precision}, "
                      f"{row.params_trainable:,} of {row.params_total:,} params trained, {row.max_steps} steps")
            if row.resumed_from:
                self.line(f"resumed from {row.resumed_from} at step {row.step}")
            left_out = {k: v for k, v in row.data.items() if v and any(w in k for w in ("skipped", "dropped",
                                                                                       "truncated"))}
            if left_out:
                self.line("data left out or cut: " + ", ".join(f"{k} {v:,}" for k, v in left_out.items()) +
                          " (the start row's data in metrics.jsonl counts everything read)")
            if self.progress is not None:
                self.task = self.progress.add_task("train", total=row.max_steps, completed=row.step, stats="")
        elif event == "train":
            mfu = f" mfu {row.mfu:.1%}" if row.mfu is not None else ""
            loss = f"{row.loss:.4f}" if row.loss is not None else "non-finite"
            mem = f"  mem {row.mem_gb:.1f}GB" if row.mem_gb is not None else ""
            stats = f"loss {loss}  lr {row.lr:.2e}  {_fmt_tps(row.tokens_per_s)} tok/s{mfu}{mem}"
            if row.method is not None and row.method.reward_mean is not None:  # RL: what the loss does not show
                stats += f"  reward {row.method.reward_mean:.3f}"
            if self.progress is not None and self.task is not None:
                self.progress.update(self.task, completed=row.step, stats=stats)
            else:
                self.line(f"step {row.step}  {stats}")
        elif event == "eval":
            self.line(f"eval @ step {row.step}: loss {row.eval_loss:.4f}  perplexity {row.perplexity:.2f}")
        elif event == "checkpoint":
            self.line(f"saved {row.path}")
        elif event == "error":
            self.line(f"error: {row.message}")
        elif event == "end":
            loss = f", final loss {row.final_loss:.4f}" if row.final_loss is not None else ""
            self.line(f"{row.status} after {row.step} steps in {row.wall_s:.1f}s, {row.tokens:,} tokens{loss}")
