"""The command line: `trainhub train|validate|plan|backends|data|env|doctor|runs|report|server|slurm|export|chat|serve`,
and `train` (= `trainhub train`).

The options are frozen by tests/unit/test_cli.py: they change only on purpose.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from trainhub import host as host_mod
from trainhub.jobfile import JobError, load
from trainhub.runners import RUNNERS, choose

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Train LLMs with any stack from one job file.")
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)  # never wrap a message mid-path


def _print_version(value: bool) -> None:
    if value:
        from trainhub import __version__

        console.print(f"trainhub {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                          help="Print trainhub's version and exit.")):
    """Train LLMs with any stack from one job file."""

CONFIG = typer.Option(..., "--config", "-c", help="The job file (YAML).", show_default=False)
BACKEND = typer.Option(None, "--backend", "-b", help="Run with this backend instead of the job's.")
SETS = typer.Option([], "--set", "-s", help="Override a job key: --set train.max_steps=10 (repeatable).")


def _load(config: Path, sets: list[str], backend: str | None):
    notes: list[str] = []
    try:
        job = load(config, sets, backend, notes=notes)
    except JobError as err:
        for p in err.problems:
            err_console.print(f"[red]error[/red] {p}", markup=True, highlight=False)
        raise typer.Exit(1) from None
    for note in notes:
        err_console.print(f"note: {note}", markup=False, highlight=False)
    return job


@app.command("train")
def train_cmd(config: Path = CONFIG, backend: str | None = BACKEND, sets: list[str] = SETS,
              dry_run: bool = typer.Option(False, "--dry-run", help="Run exactly one optimizer step, then exit."),
              resume: str | None = typer.Option(
                  None, "--resume", help="Continue from the run folder's latest checkpoint (bare --resume), "
                  "or from the checkpoint or run folder given."),
              resume_force: bool = typer.Option(False, "--resume-force",
                                                help="Resume even if the job changed in what it trains.")):
    """Train: validate the job, pick the backend, run it, follow its metric log."""
    from trainhub.hub import RunFolderInUse, run
    from trainhub.resume import CheckpointError

    job = _load(config, sets, backend)
    try:
        runner, _reasons = choose(job, host_mod.detect())
        code = run(job, runner, dry_run=dry_run, resume=resume, resume_force=resume_force)
    except (JobError, RunFolderInUse, CheckpointError) as err:
        err_console.print(f"[red]error[/red] {err}")
        raise typer.Exit(1) from None
    raise typer.Exit(code)


@app.command("validate")
def validate_cmd(config: Path = CONFIG, backend: str | None = BACKEND, sets: list[str] = SETS,
                 data: bool = typer.Option(False, "--data", help="Also read and check every record of the train "
                                           "and eval data, as training will, so bad data is found before a GPU "
                                           "is booked.")):
    """Check a job file; print every problem and exit 1, or exit 0."""
    job = _load(config, sets, backend)
    try:
        runner, _ = choose(job, host_mod.detect())
    except JobError as err:
        for p in err.problems:
            err_console.print(f"[red]error[/red] {p}")
        raise typer.Exit(1) from None
    if data and not _check_data(job):
        raise typer.Exit(1)
    console.print(f"ok: {config} is a valid job ({job.method.type}, {job.adapter.type}, backend {runner.name})")


SHOWN_BAD = 20  # bad records listed one by one; the rest are counted


def _check_data(job) -> bool:
    """Read every record of the job's data; print the counts and each bad record. False when training would
    stop on it (a file that cannot be read, or a bad record under data.on_error: error)."""
    from collections import Counter

    from trainhub.data.sources import DataError, load_records

    every = job.data.model_copy(update={"on_error": "skip"})  # to find every bad record, not only the first
    bad: list = []
    for split in ("train", "eval") if job.data.eval else ("train",):
        try:
            records = load_records(every, split, job.seed, job.method.type, bad=bad)
        except (DataError, ValueError) as err:
            err_console.print(f"[red]error[/red] data: {err}")
            return False
        counts = ", ".join(f"{k} {v:,}" for k, v in records.stats.items())
        n = len(records.items)
        console.print(f"data {split}: {n:,} record{'s' if n != 1 else ''} to train on ({counts})")
        for note in records.notes:
            console.print(f"note: {note}")
    if not bad:
        return True
    stop = job.data.on_error == "error"
    for record in bad[:SHOWN_BAD]:
        err_console.print(f"[red]error[/red] {record}" if stop else f"skipped: {record}")
    reasons = ", ".join(f"{k} {v:,}" for k, v in Counter(b.reason for b in bad).most_common())
    more = f" ({len(bad) - SHOWN_BAD:,} more not listed)" if len(bad) > SHOWN_BAD else ""
    if stop:
        err_console.print(f"[red]error[/red] data: {len(bad):,} bad records ({reasons}){more}; training stops at the "
                          f"first. Fix them, or set data.on_error: skip to leave them out (counted)")
    else:
        console.print(f"data: {len(bad):,} bad records will be skipped ({reasons}){more} (data.on_error: skip)")
    return not stop


@app.command("plan")
def plan_cmd(config: Path = CONFIG, backend: str | None = BACKEND, sets: list[str] = SETS,
             dry_run: bool = typer.Option(False, "--dry-run", help="Plan a one-step dry run.")):
    """Show the chosen backend and why, the exact command that would run, the backend's own config
    translated from the job (trl: the TRL trainer and every config keyword), and which parameters each
    optimizer steps at which learning rate."""
    job = _load(config, sets, backend)
    host = host_mod.detect()
    try:
        runner, reasons = choose(job, host)
    except JobError as err:
        err_console.print(f"[red]error[/red] {err}")
        raise typer.Exit(1) from None
    launch = runner.prepare(job, Path(job.output_dir), dry_run=dry_run)
    console.print(f"host: {host.describe()}")
    console.print("backends:")
    for line in reasons:
        console.print(f"  {line}")
    console.print(f"run folder: {job.output_dir}")
    console.print(f"command (in {launch.cwd}):")
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(launch.env.items()))
    console.print(f"  {env} {shlex.join(launch.argv)}".rstrip(), soft_wrap=True)
    plan_lines = getattr(runner, "plan_lines", None)  # a backend that translates the job shows the result
    if plan_lines is not None:
        for line in plan_lines(job, dry_run=dry_run):
            console.print(line, markup=False, highlight=False)
    console.print("optimizer groups:")  # native asks its engine (a few seconds: torch); the others say in a line
    for line in runner.optimizer_lines(job):
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)


WIDE_TABLE = 120
"""Below this many columns, `backends` stacks status, methods and features in one column: four columns
of ~18 characters cut words like init-from-architecture."""


@app.command("backends")
def backends_cmd():
    """List the backends: ready or what is missing, methods and features."""
    from trainhub.job import PLANNED_BACKENDS

    wide = console.width >= WIDE_TABLE
    table = Table("backend", "status", "methods", "features") if wide else Table("backend", "status, methods, features")
    for name, runner in RUNNERS.items():
        missing = runner.missing()
        status = "ready" if not missing else "missing: " + ", ".join(missing)
        methods, features = ", ".join(runner.methods), ", ".join(runner.features)
        if wide:
            table.add_row(name, status, methods, features)
        else:
            table.add_row(name, f"{status}\nmethods: {methods}\nfeatures: {features}")
    for name in PLANNED_BACKENDS:
        table.add_row(name, "planned", *(["", ""] if wide else []))
    console.print(table)


data_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Look at a job's data.")
app.add_typer(data_app, name="data")


@data_app.command("inspect")
def data_inspect_cmd(config: Path = CONFIG, sets: list[str] = SETS,
                     n: int = typer.Option(3, "--n", "-n", min=0, help="How many examples to render."),
                     split: str = typer.Option("train", "--split", help="train or eval.")):
    """Show what the model will be trained on: rendered examples with the trained tokens marked,
    token-length statistics, packing, and every count of skipped, truncated or dropped records."""
    import tempfile

    from trainhub.data.dataset import build_datasets
    from trainhub.data.inspect import show
    from trainhub.data.sources import DataError
    from trainhub.engine.model import build_tokenizer

    job = _load(config, sets, None)
    if split not in ("train", "eval"):
        err_console.print(f"[red]error[/red] --split: '{split}' is not train or eval")
        raise typer.Exit(1)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer = build_tokenizer(job, Path(tmp))
        data = build_datasets(job, tokenizer)
    except (DataError, ValueError) as err:
        err_console.print(f"[red]error[/red] {err}")
        raise typer.Exit(1) from None
    examples = data.train if split == "train" else data.eval
    if examples is None:
        err_console.print("[red]error[/red] the job has no eval data (data.eval or data.eval_fraction)")
        raise typer.Exit(1)
    for note in data.notes:
        console.print(f"note: {note}")
    console.print(f"tokenized data: {'from the cache' if data.cache == 'hit' else 'built'}")
    show(console, tokenizer, examples, job.data.max_length, n, f"{config}: {split} split")


env_app = typer.Typer(no_args_is_help=True, add_completion=False,
                      help="The environments of backends that cannot share the hub's (LLaMA-Factory, Unsloth).")
app.add_typer(env_app, name="env")


@env_app.command("setup")
def env_setup_cmd(backend: str = typer.Argument(..., help="The backend whose environment to create."),
                  python: str | None = typer.Option(
                      None, "--python", help="Adopt this existing interpreter instead of creating a virtual "
                      "environment (checked by a real import)."),
                  force: bool = typer.Option(False, "--force", help="Create it again even if it is ready.")):
    """Create the backend's virtual environment under trainhub's home from its pinned, tested set (plus
    trainhub itself), record what was installed, and check it with a real import."""
    from trainhub import envs

    try:
        m = envs.setup(backend, python=python, force=force, say=console.print)
    except envs.EnvError as err:
        err_console.print(f"[red]error[/red] {err}")
        raise typer.Exit(1) from None
    console.print(f"recorded: {envs.folder(backend) / 'env.json'} (pip freeze: freeze.txt)")
    if m.get("removed_after_install"):
        console.print("removed after install: " + ", ".join(m["removed_after_install"]))


@env_app.command("status")
def env_status_cmd(check: bool = typer.Option(True, "--check/--no-check", help="Run the real import check.")):
    """Each backend environment: present, its python, versions, and the import check."""
    code = _env_table(check)
    raise typer.Exit(code)


def _env_table(check: bool) -> int:
    from trainhub import envs

    table = Table("environment", "status", "python", "versions")
    bad = 0
    for name in envs.ENV_SPECS:
        st = envs.state(name, check=check)
        status = "ready" if st.problem is None else st.problem
        status += " (adopted)" if st.adopted else ""
        bad += st.problem is not None and st.present
        table.add_row(name, status, st.python or "-", ", ".join(f"{k} {v}" for k, v in st.versions.items()))
    console.print(f"environments: {envs.envs_dir()}")
    console.print(table)
    return 1 if bad else 0


PACKAGES = ("torch", "transformers", "peft", "trl", "datasets", "tokenizers", "accelerate")


@app.command("doctor")
def doctor_cmd():
    """Check this machine: trainhub and the versions of its training packages, the host, every backend, and
    every backend environment with the versions its real import reports."""
    from importlib.metadata import PackageNotFoundError, version

    from trainhub import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    console.print(f"trainhub {__version__}, python {sys.version.split()[0]} ({sys.executable})")
    console.print("packages: " + ", ".join(f"{name} {installed(name)}" for name in PACKAGES))
    console.print(f"host: {host_mod.detect().describe()}")
    backends_cmd()
    raise typer.Exit(_env_table(check=True))


# ----------------------------------------------------------------------------- looking back at runs


@app.command("runs")
def runs_cmd(folder: Path = typer.Argument(Path("runs"), help="Where to look for run folders (holding metrics.jsonl).")):
    """A table of the runs in FOLDER (and up to three levels below it), read from their metric logs."""
    from trainhub.report import find_runs, load, summarize
    from trainhub.report.runlog import TABLE, table_row

    found = find_runs(folder)
    if not found:
        err_console.print(f"no runs in {folder} (no metrics.jsonl)")
        raise typer.Exit(1)
    table = Table("run", *TABLE)
    for path in found:
        table.add_row(str(path.relative_to(folder)) if path != folder else str(path), *table_row(summarize(load(path))))
    console.print(table)


@app.command("report")
def report_cmd(runs: list[Path] = typer.Argument(..., help="Run folders (or their metrics.jsonl) to compare."),
               out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write."),
               png: Path | None = typer.Option(None, "--png", help="Also write every plot as a PNG into this folder.")):
    """One self-contained HTML page comparing runs: loss by step, tokens and time, lr, throughput, MFU,
    memory, RL and preference quantities where logged, a summary table, and the jobs with their
    differences marked."""
    from trainhub.report import NotARun, ReportError, write_report

    try:
        _, written = write_report(runs, out, png)
    except (NotARun, ReportError) as err:
        err_console.print(f"[red]error[/red] {err}")
        raise typer.Exit(1) from None
    for path in written:
        console.print(f"wrote {path}")


@app.command("server")
def server_cmd(host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; beyond loopback "
                                        "$TRAINHUB_SERVER_TOKEN is required."),
               port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port to listen on."),
               gpus: str | None = typer.Option(None, "--gpus", help="GPU indices, one job on each at a time "
                                               "(e.g. 0,1); default: one job at a time on the CPU."),
               allow: list[Path] = typer.Option([], "--allow", help="A folder submitted jobs may read and write "
                                                "(repeatable); default: the working directory."),
               allow_code: bool = typer.Option(False, "--allow-code", help="Run submitted jobs that bring code "
                                               "(reward functions, trust_remote_code, a nanoGPT checkout).")):
    """A job server and web dashboard: submit, queue, watch, stop and resume runs over HTTP (docs/server.md)."""
    from trainhub.server.main import ServerError, serve

    try:
        serve(host, port, gpus, allow, allow_code, say=lambda line: console.print(line, markup=False))
    except ServerError as err:
        err_console.print(f"[red]error[/red] {err}")
        raise typer.Exit(1) from None


@app.command("slurm")
def slurm_cmd(config: Path = CONFIG, sets: list[str] = SETS,
              nodes: int = typer.Option(..., "--nodes", "-N", help="Nodes to train on."),
              gpus_per_node: int = typer.Option(..., "--gpus-per-node", "-G", help="GPUs (processes) per node."),
              partition: str | None = typer.Option(None, "--partition", "-p", help="SLURM partition."),
              time_limit: str | None = typer.Option(None, "--time", "-t", help="SLURM time limit (HH:MM:SS)."),
              port: int = typer.Option(29500, "--port", help="Rendezvous port on the first node."),
              out: Path | None = typer.Option(None, "--output", "-o", help="Write the script here instead of "
                                              "printing it."),
              cpu: bool = typer.Option(False, "--cpu", help="Nodes without GPUs: --gpus-per-node processes per "
                                       "node on CPUs (gloo); no GPUs asked of SLURM."),
              submit_now: bool = typer.Option(False, "--submit", help="Write the script (to --output, else "
                                              "slurm-NAME.sbatch here) and submit it with sbatch.")):
    """Write an sbatch script that trains the job on several nodes: one trainhub, srun + torchrun on every
    node (docs/distributed.md). Without --submit it is a dry run: the script is printed (or written) and
    nothing is submitted."""
    from trainhub.slurm import Allocation, SlurmError, sbatch_script, submit

    job = _load(config, [*sets, f"distributed.nnodes={nodes}", f"distributed.nproc_per_node={gpus_per_node}",
                         "distributed.rendezvous.endpoint=localhost:1"], None)  # checked as the cluster will see it
    try:
        text = sbatch_script(job, config, sets, Allocation(nodes, gpus_per_node, partition, time_limit, port,
                                                           cpu), sys.executable, Path.cwd())
        if submit_now:
            out = out or Path(f"slurm-{job.name}.sbatch")
        if out is None:
            console.print(text, end="", markup=False, highlight=False)
            return
        out.write_text(text)
        then = submit(out) if submit_now else f"submit it with: sbatch {out}"
    except SlurmError as err:
        err_console.print(f"[red]error[/red] {err}")
        raise typer.Exit(1) from None
    console.print(f"wrote {out}; {then}", markup=False, highlight=False)


# export, chat, serve: the commands that use a trained model (trainhub.cli_model)
from trainhub.cli_model import register as _register_model_commands  # noqa: E402

_register_model_commands(app)


def bare_resume(argv: list[str]) -> list[str]:
    """`--resume` with no value means `--resume latest` (click has no optional option values)."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--resume" and (i + 1 == len(out) or out[i + 1].startswith("-")):
            out.insert(i + 1, "latest")
            break
    return out


def main() -> None:
    app(args=bare_resume(sys.argv[1:]))


train_app = typer.Typer(add_completion=False)
train_app.command(help=train_cmd.__doc__)(train_cmd)


def train_main() -> None:
    train_app(args=bare_resume(sys.argv[1:]))
