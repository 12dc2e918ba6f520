"""What every backend's child process shares: its exit codes, `child_main` (the whole process of a
backend child: arguments, job, metric log, the error and end rows of a failed run), stdio that survives
the hub going away, and SIGTERM when the parent dies.

The runners launch their children (runners/base.py says how), the engine is one (`python -m
trainhub.engine`), and the hub reads the exit codes: all three import them from here, so the engine
never imports the runners.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from trainhub.metrics import EndRow, ErrorRow, MetricLog
from trainhub.metrics.rows import EXIT_CODES

# Exit codes of a backend child process (and so of `train`), by the status it ends with (the table is
# metrics/rows.py's, which an end row without a code reads too).
EXIT_OK = EXIT_CODES["completed"]  # 0
EXIT_FAILED = EXIT_CODES["failed"]  # 1
EXIT_INTERRUPTED = EXIT_CODES["interrupted"]  # 130: stopped by SIGINT/SIGTERM after saving a checkpoint (128 + SIGINT)
# A non-finite stop, a bad record, a refused resume: EXIT_FAILED, with an error row saying which.


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


def stop_with_parent() -> None:
    """In a child, before exec: on Linux, SIGTERM when its parent dies, however it dies (the hub for a
    backend child, the nanogpt driver for nanoGPT's train.py)."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class RankLog:
    """The metric log of one process among several (torchrun sets RANK and WORLD_SIZE): rank 0 writes every
    row; the others write only the error row of their own failure, so a rank that dies is named in the log.
    Error rows carry `rank N:` in front of the message."""

    def __init__(self, log: MetricLog, rank: int):
        self.log, self.rank = log, rank

    def write(self, row) -> None:
        if isinstance(row, ErrorRow):
            self.log.write(row.model_copy(update={"message": f"rank {self.rank}: {row.message}"}))
        elif self.rank == 0:
            self.log.write(row)

    def close(self) -> None:
        self.log.close()


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
               resume_help: str = "a checkpoint folder to continue from",
               options: tuple[tuple[str, str], ...] = ()) -> int:
    """The whole process of every backend child:

        python -m PROG --run-dir DIR [OPTION PATH ...] [--dry-run] [--resume CKPT]

    reads DIR/job.json, calls `train(job, run_dir, log, run_id, dry_run=, resume=, **options)` (which
    returns 'completed', 'interrupted' or 'failed' and writes its own rows), and exits 0, 130 or 1.
    `options`: (flag, help) of the required path arguments a backend adds (nanogpt's --repo), passed to
    `train` by name (--repo -> repo=). A data or template error, or an error `explain(err)` knows (it
    returns fail's keywords: message, and error_row/step where they differ), is reported in one line;
    anything else with its traceback.
    """
    import argparse
    import os
    import traceback

    from trainhub.job import Job
    from trainhub.metrics.log import new_run_id

    protect_stdio()
    parser = argparse.ArgumentParser(prog=f"python -m {prog}")
    parser.add_argument("--run-dir", required=True, type=Path)
    for flag, help_text in options:
        parser.add_argument(flag, required=True, type=Path, help=help_text)
    parser.add_argument("--dry-run", action="store_true", help="one optimizer step, then exit")
    parser.add_argument("--resume", type=Path, default=None, help=resume_help)
    args = parser.parse_args(argv)
    run_dir = args.run_dir.resolve()
    extra = {flag.lstrip("-").replace("-", "_"): getattr(args, flag.lstrip("-").replace("-", "_")).resolve()
             for flag, _ in options}
    job = Job.model_validate_json((run_dir / "job.json").read_text())
    log = MetricLog(run_dir / "metrics.jsonl")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        log = RankLog(log, int(os.environ.get("RANK", "0")))
    run_id = os.environ.get("TRAINHUB_RUN_ID") or new_run_id()
    t0 = time.time()
    try:
        status = train(job, run_dir, log, run_id, dry_run=args.dry_run, resume=args.resume, **extra)
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
    return EXIT_CODES[status]
