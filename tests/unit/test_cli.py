"""The command line is frozen: its commands and options change only on purpose, with this test.

A new option must be added to FROZEN below, in the same change, after asking whether it belongs
in the job file instead (most things do: `--set` reaches every key).
"""

from __future__ import annotations

import os
import subprocess
import sys

import typer.main

from tests.conftest import ROOT, run_cli, tiny_pretrain_job, write_job
from trainhub.cli import app, train_app

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

JOB_OPTIONS = {"config": ["--config", "-c"], "backend": ["--backend", "-b"], "sets": ["--set", "-s"]}
FROZEN = {
    "train": {**JOB_OPTIONS, "dry_run": ["--dry-run"], "resume": ["--resume"], "resume_force": ["--resume-force"]},
    "validate": {**JOB_OPTIONS, "data": ["--data"]},
    "plan": {**JOB_OPTIONS, "dry_run": ["--dry-run"]},
    "backends": {},
    "data": {"inspect": {"config": ["--config", "-c"], "sets": ["--set", "-s"], "n": ["--n", "-n"],
                         "split": ["--split"]}},
    "env": {"setup": {"backend": ["backend"], "python": ["--python"], "force": ["--force"]},
            "status": {"check": ["--check", "--no-check"]}},
    "doctor": {},
    "runs": {"folder": ["folder"]},
    "report": {"runs": ["runs"], "out": ["--out", "-o"], "png": ["--png"]},
    "slurm": {"config": ["--config", "-c"], "sets": ["--set", "-s"], "nodes": ["--nodes", "-N"],
              "gpus_per_node": ["--gpus-per-node", "-G"], "partition": ["--partition", "-p"],
              "time_limit": ["--time", "-t"], "port": ["--port"], "out": ["--output", "-o"],
              "cpu": ["--cpu"], "submit_now": ["--submit"]},
    # using a trained model (trainhub.cli_model)
    "export": {"target": ["target"], "checkpoint": ["--checkpoint"], "fmt": ["--format", "-f"],
               "quant": ["--quant", "-q"], "out": ["--output", "-o"], "verify": ["--verify", "--no-verify"]},
    "chat": {"target": ["target"], "checkpoint": ["--checkpoint"], "system": ["--system"],
             "temperature": ["--temperature", "-t"], "max_tokens": ["--max-tokens"]},
    "serve": {"target": ["target"], "checkpoint": ["--checkpoint"], "host": ["--host"], "port": ["--port"],
              "api_key": ["--api-key"]},
    # the job server (trainhub.server)
    "server": {"host": ["--host"], "port": ["--port"], "gpus": ["--gpus"], "allow": ["--allow"],
               "allow_code": ["--allow-code"]},
}


FROZEN_GROUP = {"version": ["--version"]}  # trainhub --version


def options(command) -> dict[str, list[str]]:
    return {p.name: [*p.opts, *p.secondary_opts] for p in command.params}


def test_commands_are_frozen():
    group = typer.main.get_command(app)
    assert set(group.commands) == set(FROZEN)
    assert options(group) == FROZEN_GROUP


def test_options_are_frozen():
    group = typer.main.get_command(app)

    def frozen(cmd):
        subs = getattr(cmd, "commands", None)
        return {n: options(c) for n, c in subs.items()} if subs else options(cmd)

    assert {name: frozen(cmd) for name, cmd in group.commands.items()} == FROZEN


def test_config_is_required_and_set_repeatable():
    train = typer.main.get_command(app).commands["train"]
    params = {p.name: p for p in train.params}
    assert params["config"].required
    assert params["sets"].multiple
    assert not params["backend"].required


def test_train_script_is_trainhub_train():
    single = typer.main.get_command(train_app)
    assert options(single) == options(typer.main.get_command(app).commands["train"])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"trainhub": "trainhub.cli:main", "train": "trainhub.cli:train_main"}


# ----------------------------------------------------------------------------- through the real CLI

WIDE = {"COLUMNS": "300"}  # rich wraps at the terminal width; keep every message on one line


def test_validate_quickstart():
    done = run_cli("validate", "--config", "config/quickstart.yaml", env=WIDE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ok: config/quickstart.yaml is a valid job (pretrain, full, backend native)")


def test_validate_names_a_misspelt_key(tmp_path):
    job = tiny_pretrain_job(tmp_path)
    job["train"]["max_step"] = job["train"].pop("max_steps")
    path = write_job(tmp_path / "job.yaml", job)
    done = run_cli("validate", "-c", str(path), env=WIDE)
    assert done.returncode == 1
    assert "unknown key 'train.max_step'; did you mean 'train.max_steps'?" in done.stderr
    assert f"{path}:" in done.stderr
    assert done.stdout == ""


def test_validate_applies_set(tmp_path):
    path = write_job(tmp_path / "job.yaml", tiny_pretrain_job(tmp_path))
    done = run_cli("validate", "-c", str(path), "--set", "train.max_steps=0", env=WIDE)
    assert done.returncode == 1
    assert "train.max_steps = 0" in done.stderr


def table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0]:
            rows[cells[0]] = cells[1:]
    return rows


# Every GPU hidden from trainhub's probes (nvidia-smi, rocm-smi, xpu-smi all honour these): the statuses below
# are then exact on any machine, GPU or not.
NO_GPU = {"CUDA_VISIBLE_DEVICES": "", "HIP_VISIBLE_DEVICES": "", "ZE_AFFINITY_MASK": ""}


def _importable(*modules: str) -> list[str]:
    import importlib.util

    return [m for m in modules if importlib.util.find_spec(m) is None]


def _backends(env: dict) -> dict[str, list[str]]:
    done = run_cli("backends", env={**WIDE, **NO_GPU, **env})
    assert done.returncode == 0, done.stderr
    return table_rows(done.stdout)


def _trl_status() -> str:
    """What this machine's packages make of trl: the dev install has both (pyproject's dev extra)."""
    assert not _importable("torch", "transformers", "peft")  # native's own dependencies
    lacking = _importable("trl", "datasets")
    return "ready" if not lacking else "missing: " + ", ".join(lacking)


def test_backends_without_gpu_environments_or_checkout(tmp_path):
    rows = _backends({"TRAINHUB_ENVS": str(tmp_path / "no-envs"), "NANOGPT_DIR": ""})
    assert {name: cells[0] for name, cells in rows.items()} == {
        "native": "ready",
        "trl": _trl_status(),
        "unsloth": "missing: a GPU, its environment (trainhub env setup unsloth)",
        "llamafactory": "missing: its environment (trainhub env setup llamafactory)",
        "nanogpt": "missing: a nanoGPT checkout (backend.repo or NANOGPT_DIR)",
    }
    assert {name: cells[1] for name, cells in rows.items()} == {
        "native": "pretrain, sft, grpo", "trl": "sft, dpo, orpo, kto, grpo", "unsloth": "sft, dpo, orpo, kto, grpo",
        "llamafactory": "pretrain, sft, dpo, orpo, kto", "nanogpt": "pretrain"}


def test_backends_with_environments_and_a_checkout(tmp_path):
    """An environment counts as set up when its env.json names an interpreter that exists; unsloth still
    needs a GPU."""
    import json

    for backend in ("llamafactory", "unsloth"):
        (tmp_path / "envs" / backend).mkdir(parents=True)
        (tmp_path / "envs" / backend / "env.json").write_text(json.dumps({"python": sys.executable}))
    assert not _importable("numpy", "tokenizers", "safetensors")  # what nanogpt needs beside its checkout
    rows = _backends({"TRAINHUB_ENVS": str(tmp_path / "envs"), "NANOGPT_DIR": str(tmp_path)})
    assert {name: cells[0] for name, cells in rows.items()} == {
        "native": "ready", "trl": _trl_status(), "unsloth": "missing: a GPU", "llamafactory": "ready",
        "nanogpt": "ready"}


def test_plan_prints_the_native_engine_command(tmp_path):
    job = tiny_pretrain_job(tmp_path)
    path = write_job(tmp_path / "job.yaml", job)
    run_dir = tmp_path / "run"
    done = run_cli("plan", "-c", str(path), env=WIDE)
    assert done.returncode == 0, done.stderr
    assert "native: named by the job" in done.stdout
    assert f"run folder: {run_dir}" in done.stdout
    command = next(line for line in done.stdout.splitlines() if "-m trainhub.engine" in line).split()
    assert command[-5:] == [sys.executable, "-m", "trainhub.engine", "--run-dir", str(run_dir)]
    assert {"PYTHONUNBUFFERED=1", "TOKENIZERS_PARALLELISM=false"} <= set(command)


def test_plan_dry_run_and_backend_override(tmp_path):
    job = tiny_pretrain_job(tmp_path)
    path = write_job(tmp_path / "job.yaml", job)
    done = run_cli("plan", "-c", str(path), "--dry-run", "--backend", "auto", env=WIDE)
    assert done.returncode == 0, done.stderr
    assert "native: picked: supports method pretrain, adapter full" in done.stdout
    command = next(line for line in done.stdout.splitlines() if "-m trainhub.engine" in line).split()
    assert command[-2:] == [str(tmp_path / "run"), "--dry-run"]


def test_plan_refuses_a_backend_that_cannot_run_the_job(tmp_path):
    path = write_job(tmp_path / "job.yaml", tiny_pretrain_job(tmp_path))
    done = run_cli("plan", "-c", str(path), "-b", "unsloth", env={**WIDE, **NO_GPU})
    assert done.returncode == 1
    # without a GPU unsloth says only that, before anything about the job (model.init)
    assert done.stderr.strip() == "error backend: unsloth needs an NVIDIA, AMD or Intel GPU; none found — " \
        "backends native or trl run here"


def test_train_script_entry_point_runs_the_train_command():
    code = "import sys; sys.argv = ['train', '--help']; from trainhub.cli import train_main; train_main()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, **WIDE})
    assert done.returncode == 0, done.stderr
    for option in ("--config", "-c", "--backend", "-b", "--set", "-s", "--dry-run"):
        assert f" {option} " in done.stdout or f" {option}," in done.stdout, option
    assert "Commands" not in done.stdout  # a single command, not the group


def test_bare_resume_means_latest():
    from trainhub.cli import bare_resume

    assert bare_resume(["train", "-c", "j.yaml", "--resume"]) == ["train", "-c", "j.yaml", "--resume", "latest"]
    assert bare_resume(["-c", "j.yaml", "--resume", "--dry-run"]) == ["-c", "j.yaml", "--resume", "latest", "--dry-run"]
    assert bare_resume(["-c", "j.yaml", "--resume", "runs/x"]) == ["-c", "j.yaml", "--resume", "runs/x"]
    assert bare_resume(["-c", "j.yaml"]) == ["-c", "j.yaml"]
