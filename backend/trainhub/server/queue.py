"""The queue: runs each job through the hub exactly as `train` does, one per free slot.

A job is launched as `python -m trainhub train --config <home>/server/jobs/<id>/job.yaml --backend B
[--resume latest]`: the resolved job the server admitted, so the run's job.json, metric log, checkpoints,
sinks, export and exit codes are those of a `train` typed at a terminal. Its output (the hub's and the
backend's) goes to jobs/<id>/hub.log.

Slots: one per GPU given with `--gpus` (the job sees that GPU alone, CUDA_VISIBLE_DEVICES), or one CPU
slot (CUDA_VISIBLE_DEVICES empty). A job takes the first free slot, oldest job first.

Stop is Ctrl-C: SIGINT to the `train` process, whose hub forwards it as SIGTERM to the backend, which
finishes its step, saves a checkpoint and ends with status interrupted; a resume queues the job again
with `--resume latest` (or from the start when it stopped before its first step).

Restarts: each `train` runs in a session of its own, so it outlives the server (a crash, an upgrade,
Ctrl-C at the server's terminal). A server starting on the same home finds every job the table says
is running: a live process (same pid, still running that job's file) is followed again; one that is
gone is settled from its metric log (its end row), and without an end row it is marked interrupted,
resumable from its last checkpoint. Queued jobs simply stay queued.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from trainhub.job import Job
from trainhub.runfolder import progress
from trainhub.server.store import ACTIVE, JobRecord, Store

TICK_S = 0.3


class Queue:
    def __init__(self, store: Store, jobs_dir: Path, slots: list[str], cwd: Path):
        self.store = store
        self.jobs_dir = jobs_dir
        self.slots = slots  # "cpu" or a GPU index
        self.cwd = cwd
        self.children: dict[int, subprocess.Popen] = {}  # jobs this server launched
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ files of a job

    def folder(self, job_id: int) -> Path:
        return self.jobs_dir / str(job_id)

    def config(self, job_id: int) -> Path:
        return self.folder(job_id) / "job.yaml"

    def hub_log(self, job_id: int) -> Path:
        return self.folder(job_id) / "hub.log"

    def submit(self, job: Job, backend: str, text: str) -> JobRecord | str:
        """Record the job (queued) with its resolved file beside the text as submitted; or say why not (its
        run folder is that of a job queued or running: checked under the lock, so two at once cannot both pass)."""
        with self.lock:
            holder = next((j for j in self.store.all(ACTIVE) if j.run_dir == job.output_dir), None)
            if holder is not None:
                return (f"output_dir: {job.output_dir} is the run folder of job {holder.id} ({holder.status}); "
                        f"give this job another output_dir")
            record = self.store.add(job.name, backend, job.output_dir)
            folder = self.folder(record.id)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "submitted.yaml").write_text(text, encoding="utf-8")
            self.config(record.id).write_text(yaml.safe_dump(job.model_dump(mode="json"), sort_keys=False))
        self.wake()
        return record

    def forget(self, job_id: int) -> None:
        self.store.delete(job_id)
        shutil.rmtree(self.folder(job_id), ignore_errors=True)

    # ------------------------------------------------------------------ the loop

    def start(self) -> None:
        self.recover()
        self._thread = threading.Thread(target=self._loop, name="trainhub-queue", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop following; the runs go on (a server starting on this home finds them)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def wake(self) -> None:
        self.tick()

    def _loop(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.tick()
            except Exception as err:  # the loop must outlive one bad job; say so in the job's place
                print(f"trainhub server: queue: {err!r}", file=sys.stderr, flush=True)

    def tick(self) -> None:
        with self.lock:
            for job in self.store.all(("running", "stopping")):
                if not self._alive(job):
                    self._settle(job)
            busy = {j.slot for j in self.store.all(("running", "stopping"))}
            free = [s for s in self.slots if s not in busy]
            for job, slot in zip(self.store.all(("queued",)), free, strict=False):
                self._launch(job, slot)

    # ------------------------------------------------------------------ launching and following

    def _launch(self, job: JobRecord, slot: str) -> None:
        run_dir = Path(job.run_dir)
        resume = bool(job.resume) and progress(run_dir) is not None
        metrics = run_dir / "metrics.jsonl"
        offset = metrics.stat().st_size if resume and metrics.exists() else 0  # this launch's rows follow it
        argv = [sys.executable, "-m", "trainhub", "train", "--config", str(self.config(job.id)),
                "--backend", job.backend, *(["--resume", "latest"] if resume else [])]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "" if slot == "cpu" else slot}
        with open(self.hub_log(job.id), "a", encoding="utf-8") as log:
            log.write(f"--- trainhub server: launch {job.launches + 1} on slot {slot}: "
                      f"{' '.join(argv[1:])}\n")
            log.flush()
            try:
                child = subprocess.Popen(argv, cwd=self.cwd, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
            except OSError as err:  # the job fails, not the queue
                self.store.update(job.id, status="failed", finished=time.time(), message=f"cannot start train: {err}")
                return
        self.children[job.id] = child
        self.store.update(job.id, status="running", slot=slot, pid=child.pid, started=time.time(), finished=None,
                          log_offset=offset, launches=job.launches + 1, exit_code=None, message=None)

    def _alive(self, job: JobRecord) -> bool:
        child = self.children.get(job.id)
        if child is not None:
            return child.poll() is None
        return _runs(job.pid, str(self.config(job.id)))

    def _settle(self, job: JobRecord) -> None:
        """The job's process has ended: its status from the end row it (or its hub) wrote."""
        child = self.children.pop(job.id, None)
        code = child.returncode if child is not None else None
        end = last_end_row(Path(job.run_dir) / "metrics.jsonl", job.log_offset)
        if end is not None:
            status = end.get("status", "failed")
            code = end.get("exit_code", code) if code is None else code
            message = None if status == "completed" else _tail_error(self.hub_log(job.id))
        elif job.status == "stopping":
            status, message = "interrupted", "stopped before the run began"
        elif child is None:
            status, message = "interrupted", "the run ended while no server followed it, without an end row"
        else:
            status, message = "failed", _tail_error(self.hub_log(job.id)) or f"train exited with code {code}"
        if job.status == "stopping" and status == "failed":
            status = "interrupted"  # stopped while its backend was still starting: nothing was lost
        self.store.update(job.id, status=status, pid=None, finished=time.time(), exit_code=code, message=message)

    def recover(self) -> None:
        """After a restart: follow the runs still alive, settle the others."""
        with self.lock:
            for job in self.store.all(("running", "stopping")):
                if not self._alive(job):
                    self._settle(job)

    # ------------------------------------------------------------------ stop and resume

    def stop(self, job_id: int) -> str | None:
        """Ctrl-C for a running job; a queued one never starts. Returns why not, or None."""
        with self.lock:
            job = self.store.get(job_id)
            if job.status == "queued":
                self.store.update(job_id, when=("queued",), status="interrupted", finished=time.time(),
                                  message="stopped before it started")
                return None
            if job.status == "stopping":
                return None
            if job.status != "running":
                return f"job {job_id} is {job.status}, not running"
            try:
                os.kill(job.pid, signal.SIGINT)  # the hub: SIGTERM to its backend, which saves, then exits 130
            except ProcessLookupError:
                pass  # it just ended: the next tick settles it
            self.store.update(job_id, when=("running",), status="stopping")
            return None

    def resume(self, job_id: int) -> str | None:
        with self.lock:
            job = self.store.get(job_id)
            if job.status not in ("interrupted", "failed"):
                return f"job {job_id} is {job.status}; only an interrupted or failed job can be resumed"
            self.store.update(job_id, when=("interrupted", "failed"), status="queued", resume=1, message=None)
        self.wake()
        return None

    def active(self, job: JobRecord) -> bool:
        return job.status in ACTIVE


def _runs(pid: int | None, config: str) -> bool:
    """Process `pid` is alive (not a zombie) and still the `train` of this job's file (a pid can be reused)."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    state = stat.rpartition(")")[2].split()[0]
    return state not in ("Z", "X") and config.encode() in cmdline


def last_end_row(metrics: Path, offset: int) -> dict | None:
    """The last end row written after `offset` (this launch's rows), or None."""
    import json

    if not metrics.exists():
        return None
    with open(metrics, "rb") as f:
        f.seek(offset if metrics.stat().st_size >= offset else 0)
        lines = f.read().splitlines()
    end = None
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if row.get("event") == "end":
            end = row
    return end


def _tail_error(log: Path) -> str | None:
    """The last `error ...` line `train` printed (its own refusals, or the backend's error), if any."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines[-200:]):
        if line.startswith(("error ", "error: ")):
            return line.removeprefix("error ").removeprefix("error: ")
    return None
