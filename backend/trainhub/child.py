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


def child_main(prog: str, train, argv: list[str] | None = None, *, explain=None,
               resume_help: str = "a checkpoint folder to continue from") -> int:
    """The whole process of a backend that trains in trainhub's own child (native, trl, unsloth):

        python -m PROG --run-dir DIR [--dry-run] [--resume CKPT]

    reads DIR/job.json, calls `train(job, run_dir, log, run_id, dry_run=, resume=)` (which returns
    'completed', 'interrupted' or 'failed' and writes its own rows), and exits 0, 130 or 1. A data or
    template error, or an error `explain(err)` knows (it returns fail's keywords: message, and
    error_row/step where they differ), is reported in one line; anything else with its traceback.
    """
    import argparse
    import os
    import traceback
    from pathlib import Path

    from trainhub.job import Job
    from trainhub.metrics.log import new_run_id
    from trainhub.runners.base import EXIT_INTERRUPTED, EXIT_OK

    protect_stdio()
    parser = argparse.ArgumentParser(prog=f"python -m {prog}")
    parser.add_argument("--run-dir", required=True, type=Path)
    parser.add_argument("--dry-run", action="store_true", help="one optimizer step, then exit")
    parser.add_argument("--resume", type=Path, default=None, help=resume_help)
    args = parser.parse_args(argv)
    job = Job.model_validate_json((args.run_dir / "job.json").read_text())
    log = MetricLog(args.run_dir / "metrics.jsonl")
    run_id = os.environ.get("TRAINHUB_RUN_ID") or new_run_id()
    t0 = time.time()
    try:
        status = train(job, args.run_dir, log, run_id, dry_run=args.dry_run, resume=args.resume)
    except Exception as err:
        from trainhub.data.chat import TemplateError
        from trainhub.data.sources import DataError

        known = {"message": f"data: {err}"} if isinstance(err, DataError | TemplateError) else \
            explain(err) if explain is not None else None
        if known is not None:
            return fail(log, run_id, t0, detail="", **known)
        detail = traceback.format_exc()
        print(detail, file=sys.stderr, flush=True)
        return fail(log, run_id, t0, f"{type(err).__name__}: {err}", detail)
    finally:
        log.close()
    return {"interrupted": EXIT_INTERRUPTED, "failed": EXIT_FAILED}.get(status, EXIT_OK)
