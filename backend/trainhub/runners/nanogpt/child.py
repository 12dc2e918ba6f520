"""The nanogpt driver: `python -m trainhub.runners.nanogpt.child --run-dir RUN --repo CHECKOUT [--dry-run] [--resume CKPT]`.

Top to bottom: read RUN/job.json; tokenizer; data -> RUN/data/{train,val}.bin + meta.pkl; the config
-> RUN/nanogpt_config.py; the start row; run `python train.py RUN/nanogpt_config.py` (torchrun for
several GPUs) with cwd = the checkout; every output line goes verbatim to RUN/nanogpt.log, metric
lines become rows, other lines are shown; each finished save becomes a checkpoint; at the end the last
one is exported to RUN/final as a Hugging Face GPT-2. Exit codes as the native engine's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers.utils import logging as hf_logging

from trainhub.child import EXIT_FAILED, EXIT_INTERRUPTED, child_main, stop_with_parent
from trainhub.data.sources import load_records
from trainhub.data.writers import write_nanogpt
from trainhub.engine.device import device_facts
from trainhub.engine.model import build_tokenizer
from trainhub.engine.precision import NAMES
from trainhub.export.nanogpt import export_hf, load_checkpoint
from trainhub.job import Job
from trainhub.job.sizes import tokens_per_step
from trainhub.metrics import CheckpointRow, EndRow, ErrorRow, MetricLog, StartRow
from trainhub.metrics.flops import flops_per_token
from trainhub.resume import read_state
from trainhub.runners.nanogpt import translate as cfg
from trainhub.runners.nanogpt.logparse import Eval, Iter, RowMaker, Save, parse
from trainhub.runners.nanogpt.snapshots import CKPT, Snapshots
from trainhub.runners.nanogpt.source import find_ckpt, find_tokenizer


class Failure(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    return child_main("trainhub.runners.nanogpt.child", drive, argv, explain=explain,
                      options=(("--repo", "the nanoGPT checkout"),))


def explain(err: Exception) -> dict | None:
    """A refusal the driver words itself (a ValueError from the translation included), in one line."""
    return {"message": str(err)} if isinstance(err, Failure | ValueError) else None


def drive(job: Job, run_dir: Path, log: MetricLog, run_id: str, *, dry_run: bool, resume: Path | None,
          repo: Path) -> str:
    """The whole run (module docstring); returns 'completed', 'interrupted' or 'failed'. Rows go to `log`."""
    t0 = time.time()
    hf_logging.disable_progress_bar()  # its bars would garble the hub's console
    notes: list[str] = []
    (run_dir / CKPT).unlink(missing_ok=True)  # never let a stale file pass for a new save
    source = find_ckpt(Path(job.model.path)) if job.model.path else None
    tokenizer = _tokenizer(job, run_dir, source)

    # data: the job's text, tokenized once, as nanoGPT reads it
    records = {s: load_records(job.data, s, job.seed, method="pretrain") for s in ("train", "eval")}
    vocab = len(tokenizer) if source else (job.model.init.vocab_size or len(tokenizer))
    model_args = None
    if source is not None:
        model_args = dict(load_checkpoint(source)["model_args"])
        vocab = int(model_args["vocab_size"])
        if len(tokenizer) > vocab or job.data.max_length > int(model_args["block_size"]):
            raise Failure(f"model.path: {source} has {vocab} token rows and block_size {model_args['block_size']}; "
                          f"the tokenizer has {len(tokenizer)} tokens and data.max_length is {job.data.max_length}")
    counts = write_nanogpt(run_dir / "data", tokenizer, (r.text for r in records["train"].items),
                           (r.text for r in records["eval"].items), vocab_size=vocab)
    for split, n in counts.items():
        if n <= job.data.max_length + 1:
            raise Failure(f"data: the {split} split has {n} tokens; nanoGPT samples windows of data.max_length + 1 "
                          f"= {job.data.max_length + 1}, so it needs more")

    # the host
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    processes = cfg.processes_asked(job) or (torch.cuda.device_count() if cuda else 1)
    if not cuda:
        notes.append("CPU: nanoGPT runs with device cpu, dtype float32, compile off")
    elif cfg.compile_on(job):
        notes.append("GPU: compile on (nanoGPT's torch.compile); TF32 matmuls on (nanoGPT sets them)")

    # where the model starts
    init_from, skip, best = "scratch", None, None
    if resume is not None:
        shutil.copyfile(resume / CKPT, run_dir / CKPT)
        state, _ = read_state(resume)
        init_from, skip, best = "resume", int(state["step"]), state.get("best_eval_loss")
    elif source is not None:
        _fresh_copy(source, run_dir / CKPT)
        init_from = "resume"
        notes.append(f"continuing {source}: its weights and optimizer state; iterations, schedule and best "
                     f"val loss start anew")
    start_step = skip or 0
    facts = cfg.Facts(run_dir=run_dir, data_dir=run_dir / "data", device=device.type,
                      bf16=cuda and torch.cuda.is_bf16_supported(), processes=processes,
                      train_tokens=counts["train"], val_tokens=counts["val"], init_from=init_from,
                      model_args=model_args, dry_run=dry_run, start_step=start_step)
    values = cfg.settings(job, facts)
    steps = start_step + 1 if dry_run else cfg.max_steps(job, facts)
    config_file = run_dir / "nanogpt_config.py"
    command = _command(config_file, processes)
    config_text = cfg.render(values, ["written by trainhub from job.json; nanoGPT reads it with:",
                                      f"  cd {repo} && {' '.join(command)}"])
    config_file.write_text(config_text)
    notes += [f"nanoGPT checkout {repo}{_commit(repo)}; config {config_file}",
              "job.seed picks trainhub's data split only: nanoGPT seeds torch with 1337 + rank"]
    if not dry_run:
        notes.append("nanoGPT runs one iteration past the last save (its loop ends after max_iters); it is not logged")

    # counts and the start row
    arch = {**values, "vocab_size": vocab}
    total, matmul = cfg.param_counts(arch, vocab)
    fpt = flops_per_token(n_frozen=0, n_trainable=matmul, layers=values["n_layer"], heads=values["n_head"],
                          head_dim=values["n_embd"] // values["n_head"], seq_len=values["block_size"])
    hardware = {**device_facts(device), "device_count": processes}
    per_step = tokens_per_step(job, processes)  # windows of exactly data.max_length: the count, not a bound
    log.write(StartRow(
        run_id=run_id, step=start_step, backend="nanogpt", job_hash=job.hash(), job=job.model_dump(mode="json"),
        hardware=hardware, params_total=total, params_trainable=total, flops_per_token=fpt,
        precision=NAMES[cfg.precision(job, facts)], max_steps=steps, tokens_per_step=per_step, notes=notes,
        data={**{f"train_{k}": v for k, v in records["train"].stats.items()}, "train_tokens": counts["train"],
              "eval_tokens": counts["val"]},
        resumed_from=str(resume) if resume else None))
    for note in notes:
        print(f"note: {note}", flush=True)

    maker = RowMaker(run_id, steps, per_step, fpt, hardware["peak_flops"], processes,
                     lambda it: cfg.lr_at(it, values), counts["train"],
                     values["eval_iters"] * values["batch_size"] * values["block_size"])
    snaps = Snapshots(run_dir, job.model_dump(mode="json"), job.hash(), job.train.keep_last, per_step,
                      best_eval_loss=best, skip_step=skip)
    status, code, last_loss, last_step = follow(command, repo, run_dir, config_text, maker, snaps, log, run_id)

    step = last_step or start_step
    if status == "completed":
        step = steps
        if not dry_run:
            latest = snaps.latest or ((skip, resume) if resume is not None else None)  # nothing left to train
            if latest is None or latest[0] != steps:
                raise Failure(f"nanoGPT ended without saving step {steps} (see {run_dir / 'nanogpt.log'})")
            final = export_hf(latest[1] / CKPT, tokenizer, run_dir / "final")
            log.write(CheckpointRow(run_id=run_id, step=steps, path=str(final)))
    log.write(EndRow(run_id=run_id, step=step, status=status, wall_s=time.time() - t0, tokens=step * per_step,
                     final_loss=last_loss, exit_code=code))
    return status


def follow(command: list[str], repo: Path, run_dir: Path, config_text: str, maker: RowMaker, snaps: Snapshots,
           log: MetricLog, run_id: str) -> tuple[str, int, float | None, int | None]:
    """Run nanoGPT and turn its output into rows. Returns (status, exit code, last train loss, its step)."""
    quiet = {line.strip() for line in config_text.splitlines() if line.strip()}
    child = subprocess.Popen(command, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             bufsize=1, env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=stop_with_parent)
    stopped = []

    def on_signal(signum, _frame):
        stopped.append(signum)
        child.send_signal(signal.SIGTERM)  # nanoGPT has no handler: it stops at once, its last save is kept

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    status, last_loss, last_step, pending, tail = "completed", None, None, False, []
    alive = lambda: child.poll() is None  # noqa: E731
    with open(run_dir / "nanogpt.log", "a", encoding="utf-8") as raw:
        for line in child.stdout:
            raw.write(line)
            raw.flush()
            tail = (tail + [line.rstrip()])[-40:]
            event = parse(line)
            if isinstance(event, Iter):
                if pending:
                    _claimed(snaps.claim(alive), log, run_id)
                    pending = False
                row = maker.train(event)
                if row is not None:
                    log.write(row)
                    last_loss, last_step = row.loss, row.step
                    if row.loss is None:
                        log.write(ErrorRow(run_id=run_id, step=row.step, message=f"non-finite loss at step "
                                           f"{row.step}; nanogpt stops the run (train.on_nonfinite: stop), the last "
                                           f"checkpoint is kept"))
                        status = "failed"
                        child.terminate()
            elif isinstance(event, Eval):
                log.write(maker.eval(event))
                snaps.eval_loss(event.it, event.val_loss)
            elif isinstance(event, Save):
                pending = True
            elif line.strip() and line.strip() not in quiet and not line.startswith("Overriding config with"):
                print(line.rstrip(), flush=True)
    code = child.wait()
    _claimed(snaps.claim(alive), log, run_id)  # a save the process finished before it ended
    if stopped:
        return "interrupted", EXIT_INTERRUPTED, last_loss, last_step
    if status == "failed":
        return status, EXIT_FAILED, last_loss, last_step
    if code != 0:
        last = next((t for t in reversed(tail) if t.strip()), "")
        log.write(ErrorRow(run_id=run_id, step=snaps.latest[0] if snaps.latest else 0,
                           message=f"nanoGPT's train.py exited with code {code}: {last}", detail="\n".join(tail)))
        return "failed", code, last_loss, last_step
    return "completed", code, last_loss, last_step


def _claimed(result, log: MetricLog, run_id: str) -> None:
    if result is not None:
        log.write(CheckpointRow(run_id=run_id, step=result[0], path=str(result[1])))


def _command(config_file: Path, processes: int) -> list[str]:
    if processes > 1:  # torchrun, as nanoGPT's train.py docstring shows; the same interpreter
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                "train.py", str(config_file)]
    return [sys.executable, "train.py", str(config_file)]


def _tokenizer(job: Job, run_dir: Path, source: Path | None):
    if source is None:
        return build_tokenizer(job, run_dir)
    from trainhub.data.tokenizer import load_tokenizer

    folder = find_tokenizer(source)
    if folder is None:
        raise Failure(f"model.path: no tokenizer beside {source} (a tokenizer/ folder, tokenizer files in the same "
                      f"folder, or the run folder's tokenizer/); nanoGPT checkpoints do not store one")
    tok = load_tokenizer(str(folder))
    tok.save_pretrained(run_dir / "tokenizer")
    return tok


def _fresh_copy(source: Path, target: Path) -> None:
    """The checkpoint as nanoGPT's resume reads it, with its iteration count and best val loss reset."""
    ckpt = load_checkpoint(source)
    torch.save({**ckpt, "iter_num": 0, "best_val_loss": 1e9}, target)


def _commit(repo: Path) -> str:
    if not (repo / ".git").exists():  # an archive, or a folder inside another repository: no commit of its own
        return ""
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        return f" at commit {out.stdout.strip()}" if out.returncode == 0 and out.stdout.strip() else ""
    except (OSError, subprocess.SubprocessError):
        return ""


if __name__ == "__main__":
    sys.exit(main())
