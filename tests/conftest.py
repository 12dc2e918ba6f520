"""Shared test helpers: tiny job files on tiny data, and running the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "config" / "data"

if "triton" not in sys.modules and not os.path.exists("/dev/nvidia0"):
    # Without a GPU the kernel tests (tests/kernels) run Triton's interpreter, which must be on when triton is
    # first imported (its own tl.* helpers are decorated then); torchao and torch import triton, so it is set
    # here, before any test module. backend.kernels auto still means none without CUDA (engine/kernels).
    os.environ.setdefault("TRITON_INTERPRET", "1")


def tiny_pretrain_job(tmp: Path, **overrides) -> dict:
    """A Llama of a few thousand parameters on the shipped stories (first 200 documents)."""
    train = tmp / "stories_small.jsonl"
    if not train.exists():
        lines = (DATA / "stories.jsonl").read_text().splitlines()[:200]
        train.write_text("\n".join(lines) + "\n")
    job = {
        "name": "tiny-pretrain",
        "output_dir": str(tmp / "run"),
        "seed": 0,
        "backend": "native",
        "model": {"init": {"family": "llama", "hidden_size": 32, "intermediate_size": 64, "num_layers": 2,
                           "num_heads": 4, "num_kv_heads": 2, "max_position_embeddings": 64,
                           "tokenizer": {"type": "train", "vocab_size": 400}}},
        "method": "pretrain",
        "data": {"train": str(train), "eval": str(DATA / "stories_eval.jsonl"), "format": "text", "max_length": 32},
        "optim": {"type": "adamw", "lr": 1e-2},
        "schedule": {"warmup_steps": 2},
        "train": {"micro_batch_size": 8, "max_steps": 12, "precision": "fp32", "eval_batches": 2, "log_every": 1},
        "log": {"console": "plain"},
    }
    return merge(job, overrides)


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_job(path: Path, job: dict) -> Path:
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def run_cli(*args: str, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real command line, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "trainhub", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})


def rows(run_dir: Path, event: str | None = None) -> list[dict]:
    out = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if line]
    return [r for r in out if event is None or r["event"] == event]


def train_losses(run_dir: Path) -> list[float]:
    return [r["loss"] for r in rows(run_dir, "train")]


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory) -> Path:
    """A tiny model pretrained once per session through the real CLI; its final/ folder."""
    tmp = tmp_path_factory.mktemp("pretrained")
    job = tiny_pretrain_job(tmp, train={"max_steps": 30})
    done = run_cli("train", "--config", str(write_job(tmp / "job.yaml", job)))
    assert done.returncode == 0, done.stdout + done.stderr
    return tmp / "run" / "final"


@pytest.fixture(autouse=True, scope="session")
def _private_trainhub_home(tmp_path_factory):
    """Tests never read or fill the user's cache (~/.cache/trainhub)."""
    os.environ["TRAINHUB_HOME"] = str(tmp_path_factory.mktemp("trainhub_home"))


# Backend environments for the tests live in the checkout (gitignored), shared by every test session:
# a clean clone creates each once (LLaMA-Factory: ~2.5 min, 1.8 GB); later sessions find it ready.
TEST_ENVS = ROOT / ".cache" / "envs"


@pytest.fixture(scope="session")
def llamafactory_env() -> dict[str, str]:
    """LLaMA-Factory's environment, created by the real `trainhub env setup` (a no-op when it is ready);
    the variables that point trainhub at it, for run_cli(env=...)."""
    env = {"TRAINHUB_ENVS": str(TEST_ENVS)}
    done = run_cli("env", "setup", "llamafactory", env=env, timeout=1800)
    assert done.returncode == 0, done.stdout + done.stderr
    return env
