"""Who may write a run folder, and when a folder that holds an old run may be used again.

One process at a time. `claim(run_dir)` takes an exclusive `fcntl.flock` on `run_dir/run.lock` and
holds it for the run's life; the hub passes the lock's descriptor to its backend child, so the lock
lasts until both have exited (a child still saving after its hub was killed keeps the folder). A
second `train` on the folder (a scheduler's retry, a second terminal) is refused before it reads a
checkpoint or writes a byte, naming the holder: pid, host and since when, as the holder wrote them
into the lock file. The kernel drops a flock when the last process holding it dies, however it dies,
so a lock file left behind by a dead process never blocks anyone: only a live holder does. (flock is
per host on most network file systems: two hosts sharing a run folder over NFS are not kept apart.)

A folder whose run stopped before its first step (no checkpoint, no completed step, no final model)
holds nothing worth protecting: `reuse_check` says so, and the new run keeps the old log as
`metrics.failed-<time>.jsonl` (and `console.failed-<time>.log`) beside its own.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK = "run.lock"


class RunFolderInUse(Exception):
    pass


@contextmanager
def claim(run_dir: Path) -> Iterator[int]:
    """Hold run_dir for this process (creating the folder if needed); yields the lock's file descriptor,
    for a child process to inherit. Raises RunFolderInUse while another live process holds it."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise RunFolderInUse(f"{run_dir}: cannot create the run folder or its lock ({err.strerror or err})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 4096).decode("utf-8", "replace")
        os.close(fd)
        raise RunFolderInUse(_in_use(run_dir, holder)) from None
    try:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S %z"),
              "command": " ".join([_program(), *sys.argv[1:]])}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        yield fd
    finally:
        try:
            os.ftruncate(fd, 0)  # no holder now; the file stays (removing it would race a process opening it)
        finally:
            os.close(fd)


def _program() -> str:
    """`train` or `trainhub` as the user typed it (`python -m trainhub` runs trainhub/__main__.py)."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "trainhub"
    return "trainhub" if name == "__main__.py" else name


def _in_use(run_dir: Path, holder: str) -> str:
    try:
        h = json.loads(holder)
    except ValueError:
        return f"{run_dir} is in use by another process (it took {run_dir / LOCK} a moment ago); wait for it to end"
    who = f"pid {h.get('pid')} on {h.get('host')}, since {h.get('since')} ({h.get('command')})"
    if h.get("host") == socket.gethostname() and not _alive(h.get("pid")):
        return (f"{run_dir} is in use: the run started by {who} is still finishing (that process has ended; its "
                f"backend, which holds the lock with it, is saving and exiting); try again when it is done")
    return (f"{run_dir} is in use by a live run: {who}. One process writes a run folder at a time: wait for it "
            f"to end (or stop it: Ctrl-C or kill -INT {h.get('pid')} saves a checkpoint), then --resume")


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (TypeError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def progress(run_dir: Path) -> str | None:
    """What in run_dir is worth protecting (a checkpoint, a completed step, a final model), or None."""
    for name in ("checkpoints", "final", "adapter"):
        if (run_dir / name).is_dir() and any((run_dir / name).iterdir()):
            return f"{name}/"
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists():
        return None
    steps = 0
    for line in metrics.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if row.get("event") in ("train", "eval", "checkpoint") or (row.get("step") or 0) > 0:
            steps = max(steps, row.get("step") or 0, 1)
    return f"a run that completed {steps} step{'s' if steps != 1 else ''} (metrics.jsonl)" if steps else None


def set_aside_failed(run_dir: Path) -> str:
    """Rename the log of a run that stopped before its first step; returns the name it was kept under."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    kept = f"metrics.failed-{stamp}.jsonl"
    (run_dir / "metrics.jsonl").rename(run_dir / kept)
    if (run_dir / "console.log").exists():
        (run_dir / "console.log").rename(run_dir / f"console.failed-{stamp}.log")
    return kept
