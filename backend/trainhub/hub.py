"""Running a job: write job.json, launch the backend's child process, follow its metric log.

The hub names the run (TRAINHUB_RUN_ID in the child's environment). The child runs in a process group
of its own (in the hub's session), so a Ctrl-C at the terminal reaches the hub only; the hub forwards
the first as SIGTERM (the child finishes its step, saves a checkpoint and exits 130) and a second as
SIGKILL. The child's
stdout and stderr are shown above the progress bar and kept in
run_dir/console.log, with secret values redacted (trainhub.secrets). If the child dies without an end row, the hub writes one.
The run folder is held by one process at a time, for the run's life (trainhub.runfolder): the hub claims
it before reading a checkpoint or writing anything, and the child inherits the claim.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from trainhub.child import EXIT_FAILED, stop_with_parent
from trainhub.job import Job
from trainhub.metrics import EndRow, ErrorRow, MetricLog
from trainhub.metrics.log import new_run_id
from trainhub.metrics.rows import ROW_ADAPTER
from trainhub.progress import View
from trainhub.resume import CheckpointError, check_resume, find_checkpoint
from trainhub.runfolder import RunFolderInUse, claim, progress, set_aside_failed
from trainhub.runners.base import Launch, Runner
from trainhub.secrets import redact, secret_values
from trainhub.sinks import build_sinks
from trainhub.sinks.fanout import Sinks

__all__ = ["RunFolderInUse", "find_resume", "prepare_run_dir", "run"]


def prepare_run_dir(job: Job, resuming: bool, say=lambda line: None) -> Path:
    """The run folder, ready for a run: a new one, one being resumed, or one whose run stopped before its
    first step (its log set aside, `say` told). A folder holding progress is refused unless resuming."""
    run_dir = Path(job.output_dir)
    if (run_dir / "metrics.jsonl").exists() and not resuming:
        held = progress(run_dir)
        if held:
            raise RunFolderInUse(f"{run_dir} already holds a run ({held}); continue it with --resume, choose "
                                 f"another folder with --set output_dir=..., or remove it")
        kept = set_aside_failed(run_dir)
        say(f"{run_dir} held a run that stopped before its first step (no checkpoint, no completed step): "
            f"starting again in it; its log is kept as {kept}")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "job.json").write_text(json.dumps(job.model_dump(mode="json"), indent=2) + "\n")
    return run_dir


def find_resume(job: Job, where: str, force: bool) -> Path:
    """The checkpoint to resume from; raises CheckpointError naming every refused change to the job."""
    run_dir = Path(job.output_dir)
    try:
        checkpoint = find_checkpoint(where, run_dir)
    except CheckpointError as err:
        if str(where) != "latest" or progress(run_dir):
            raise
        what = "holds no run" if not (run_dir / "metrics.jsonl").exists() else \
            "holds a run that stopped before its first step (no checkpoint, no completed step)"
        raise CheckpointError(f"{err}: {run_dir} {what}, so there is nothing to resume; run the same command "
                              f"without --resume to start it") from None
    refused = check_resume(checkpoint, job.model_dump(mode="json"), force)
    if refused:
        raise CheckpointError(f"{checkpoint} was written by a different job; these changes are refused "
                              f"(pass --resume-force to resume anyway):\n  " + "\n  ".join(refused))
    return checkpoint


def run(job: Job, runner: Runner, *, dry_run: bool = False, resume: str | Path | None = None,
        resume_force: bool = False, view: View | None = None) -> int:
    """Launch the job through `runner` and return the child's exit code. `resume`: 'latest', or a
    checkpoint or run folder (find_resume). The run folder is claimed first, so a second process never
    reads a checkpoint that the live run is replacing, nor writes a row into its log."""
    view = view or View(job.log.console)
    with claim(Path(job.output_dir)) as lock:
        checkpoint = find_resume(job, str(resume), resume_force) if resume is not None else None
        run_dir = prepare_run_dir(job, resuming=checkpoint is not None, say=view.line)
        launch = runner.prepare(job, run_dir, dry_run=dry_run, resume=checkpoint)
        run_id = new_run_id()
        with view:
            sinks = Sinks(build_sinks(job.log), run_dir, run_id, say=view.line)  # wandb, tensorboard, prometheus
            try:
                code = _follow(launch, run_dir, run_id, view, sinks, pass_fds=(lock,))
            finally:
                sinks.close()
        if code == 0 and not dry_run and job.export.gguf:  # the job's export section, once training completed
            from trainhub.export.main import after_training

            code = after_training(job, run_dir, say=view.line) and EXIT_FAILED
        return code


def _follow(launch: Launch, run_dir: Path, run_id: str, view: View, sinks: Sinks | None = None,
            pass_fds: tuple[int, ...] = ()) -> int:
    """Run the child, show its output and the rows it appends (not those of earlier runs in the log), and hand
    each row to the sinks."""
    sinks = sinks or Sinks([], run_dir, run_id)
    metrics = run_dir / "metrics.jsonl"
    t0 = time.time()
    with open(run_dir / "console.log", "a", encoding="utf-8") as console_log:
        env = {**os.environ, **launch.env, "TRAINHUB_RUN_ID": run_id}
        offset = metrics.stat().st_size if metrics.exists() else 0  # a resumed run's log holds the old rows
        child = subprocess.Popen(launch.argv, cwd=launch.cwd, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                 preexec_fn=_detach, pass_fds=pass_fds)
        reader = threading.Thread(target=_pump, args=(child, console_log, view), daemon=True)
        reader.start()
        interrupts = 0

        def on_sigint(_signum, _frame):
            nonlocal interrupts
            interrupts += 1
            if interrupts == 1:
                view.line("stopping: the backend finishes its step and saves (Ctrl-C again to kill it)")
                child.send_signal(signal.SIGTERM)
            else:
                child.kill()

        previous = signal.signal(signal.SIGINT, on_sigint)
        last_event, end_code = None, None
        try:
            while True:
                done = child.poll() is not None
                if done:  # its last output first, then its last rows: the end row closes the console
                    reader.join(timeout=5)
                offset, events = _read_new(metrics, offset, view, sinks)
                last_event = events[-1].event if events else last_event
                end_code = next((e.exit_code for e in reversed(events) if e.event == "end"), end_code)
                if done:
                    break
                time.sleep(0.2)
        finally:
            signal.signal(signal.SIGINT, previous)
            if child.poll() is None:  # the hub is failing: never leave the backend running on its own
                child.terminate()
                try:
                    child.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    child.kill()
    code = child.returncode
    if last_event != "end":  # the child died before writing its end row
        log = MetricLog(metrics)
        message = f"backend process exited with code {code} without an end row (see {run_dir / 'console.log'})"
        for row in (ErrorRow(run_id=run_id, step=0, message=message),
                    EndRow(run_id=run_id, step=0, status="failed", wall_s=time.time() - t0, tokens=0,
                           final_loss=None, exit_code=code)):
            log.write(row)
            view.row(row)
            sinks.write(row)
        log.close()
        return code or EXIT_FAILED
    if code and end_code is not None and _under_torchrun(launch):
        return end_code  # torchrun exits 1 whatever its workers' codes; rank 0's end row knows (130: interrupted)
    return code


def _under_torchrun(launch: Launch) -> bool:
    return "torch.distributed.run" in launch.argv


def _detach() -> None:
    """In the child, before exec: a process group of its own, so the terminal's Ctrl-C (sent to the
    foreground group) reaches the hub only, which forwards it as SIGTERM; and, on Linux, SIGTERM when
    the hub dies, however it dies (even SIGKILL), so the backend saves a checkpoint and exits instead of
    training on unattended.

    A group, not a session (setsid): the child stays in the hub's session, and so in its CPU autogroup
    where the kernel groups tasks by session (sched_autogroup, on by default in most distributions).
    The unsloth child in a session of its own took 1.6-11.6% longer per step than in its parent's, in
    each of 4 alternating pairs; `train` itself did not get measurably faster from this change
    (research/results/unsloth.md, sixth session)."""
    os.setpgid(0, 0)
    stop_with_parent()


def _pump(child: subprocess.Popen, sink, view: View) -> None:
    secrets = secret_values()
    for line in child.stdout:
        line = redact(line, secrets)
        sink.write(line)
        sink.flush()
        view.line(line.rstrip("\n"))


def _read_new(path: Path, offset: int, view: View, sinks: Sinks) -> tuple[int, list]:
    """Rows appended since `offset` (whole lines only); each is shown and handed to the sinks. Returns the
    new offset and the rows (but warning rows, which the hub itself may write after the end row)."""
    if not path.exists():
        return offset, []
    with open(path, "rb") as f:
        f.seek(offset)
        chunk = f.read()
    end = chunk.rfind(b"\n") + 1
    events = []
    for line in chunk[:end].splitlines():
        if line.strip():
            row = ROW_ADAPTER.validate_json(line)
            view.row(row)
            sinks.write(row)
            if row.event != "warning":
                events.append(row)
    return offset + end, events
