"""Feeding the sinks of one launch from the hub's follow loop, each on a thread of its own.

The follow loop reads every row of metrics.jsonl, the earlier launches' too under --resume; only the rows
of this launch (its run id) reach the sinks, so each sink sees exactly one start ... end. A queue and a
thread per sink keep a slow one (importing wandb and starting its run takes 5-15 s on 2 busy cores, an
upload can stall) from holding up the console, the hub's watch over the child, or the other sinks.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from trainhub.metrics import MetricLog, WarningRow
from trainhub.sinks import Sink

CLOSE_TIMEOUT_S = 300.0
"""How long the hub waits, after the run, for sinks to finish (wandb uploads what is left)."""

_STOP = object()


class Sinks:
    """Hands the rows of launch `run_id` to `sinks`. A sink that raises is closed, dropped and reported
    once through `say` and as a warning row appended to run_dir/metrics.jsonl."""

    def __init__(self, sinks: list[Sink], run_dir: Path, run_id: str, say: Callable[[str], None] = print):
        self.run_dir, self.run_id, self.say = Path(run_dir), run_id, say
        self.warnings: list[str] = []
        self._log_lock = threading.Lock()
        self._lanes = [_Lane(sink, self) for sink in sinks]

    def write(self, row) -> None:
        if row.run_id == self.run_id and row.event != "warning":
            for lane in self._lanes:
                lane.queue.put(row)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """After the run: let the sinks finish (closing any the run left open), at most `timeout` s."""
        for lane in self._lanes:
            lane.queue.put(_STOP)
        deadline = time.monotonic() + timeout
        late = []
        for lane in self._lanes:
            lane.thread.join(max(deadline - time.monotonic(), 0))
            if lane.thread.is_alive():
                late.append(lane.sink.name)
        if late:
            self.say(f"warning: {', '.join(late)} did not finish within {timeout:.0f} s; leaving without it")
        self._lanes = []

    def __enter__(self) -> Sinks:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def warn(self, sink: Sink, step: int, message: str) -> None:
        """Once per failed sink: the console, and a warning row in the metric log (valid against its schema;
        the child appends to the same file, each writer a whole line per write)."""
        self.warnings.append(message)
        self.say(f"warning: {message}")
        try:
            with self._log_lock:
                log = MetricLog(self.run_dir / "metrics.jsonl")
                log.write(WarningRow(run_id=self.run_id, step=step, source=sink.name, message=message))
                log.close()
        except OSError as err:
            self.say(f"warning: could not record that in the metric log: {err}")


class _Lane:
    """One sink's queue and thread: open at the start row, write, close at the end row or on _STOP."""

    def __init__(self, sink: Sink, owner: Sinks):
        self.sink, self.owner = sink, owner
        self.queue: queue.Queue = queue.Queue()
        self.opened = self.failed = False
        self.step = 0
        self.thread = threading.Thread(target=self._work, name=f"trainhub-{sink.name}", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        while True:
            row = self.queue.get()
            if row is _STOP:
                if self.opened:
                    self._call("close", None)
                return
            if self.failed:
                continue
            self.step = max(self.step, row.step)
            if row.event == "start":
                if self.opened:  # no backend writes two starts in one launch; if one did, start afresh
                    self._call("close", None)
                self.opened = self._call("open", row, self.owner.run_dir, row.resumed_from is not None)
                if self.opened and getattr(self.sink, "where", ""):
                    self.owner.say(f"{self.sink.name}: {self.sink.where}")
            elif not self.opened:
                continue  # a launch that failed before its start row has nothing to show
            elif row.event == "end":
                self._call("close", row)
                self.opened = False
            else:
                self._call("write", row)

    def _call(self, method: str, *args) -> bool:
        try:
            getattr(self.sink, method)(*args)
            return True
        except Exception as err:  # a sink never stops the run, whatever it raises
            self.failed, self.opened = True, False
            if method != "close":
                try:
                    self.sink.close(None)
                except Exception:
                    pass
            text = " ".join(str(err).split()) or type(err).__name__
            what = "failed to start" if method == "open" else "failed"
            self.owner.warn(self.sink, self.step, f"{self.sink.name} {what}: {text}; training goes on without it")
            return False
