"""What every backend's child process shares: stdio that survives the hub going away, and the
error and end rows of a failed run."""

from __future__ import annotations

import sys
import time

from trainhub.metrics import EndRow, ErrorRow, MetricLog
from trainhub.runners.base import EXIT_FAILED


class Resilient:
    """stdout/stderr that keep the run going when the hub reading them is gone (a write to a closed
    pipe would otherwise raise in the middle of saving a checkpoint)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (BrokenPipeError, OSError):
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except (BrokenPipeError, OSError):
            pass

    def __getattr__(self, name):
        return getattr(self._stream, name)


def protect_stdio() -> None:
    sys.stdout, sys.stderr = Resilient(sys.stdout), Resilient(sys.stderr)


def fail(log: MetricLog, run_id: str, t0: float, message: str, detail: str, error_row: bool = True,
         step: int = 0) -> int:
    """Say why on stderr, write the error row (unless one was written already) and a failed end row."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    if error_row:
        log.write(ErrorRow(run_id=run_id, step=step, message=message, detail=detail[-4000:]))
    log.write(EndRow(run_id=run_id, step=step, status="failed", wall_s=time.time() - t0, tokens=0, final_loss=None,
                     exit_code=EXIT_FAILED))
    return EXIT_FAILED
