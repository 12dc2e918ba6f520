"""Never lose a run: exact resume, refused job changes, crash-safe saves, non-finite guards, secrets."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, rows, run_cli, tiny_pretrain_job, write_job


def _losses_by_step(run_dir: Path) -> dict[int, float]:
    """Per-step losses of a run folder; after a resume the later row for a step wins."""
    return {r["step"]: r["loss"] for r in rows(run_dir, "train")}


def _interrupt_after(config: Path, run_dir: Path, min_step: int) -> subprocess.CompletedProcess:
    """Start `train`, send Ctrl-C (SIGINT to the hub) once a train row past min_step is logged."""
    hub = subprocess.Popen([sys.executable, "-m", "trainhub", "train", "--config", str(config)], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = run_dir / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if metrics.exists() and any(r["step"] >= min_step for r in rows(run_dir, "train")):
            break
        time.sleep(0.05)
    hub.send_signal(signal.SIGINT)
    out, _ = hub.communicate(timeout=120)
    return subprocess.CompletedProcess(hub.args, hub.returncode, out, "")


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    """Bitwise on CPU fp32: the per-step losses of stop + --resume equal those of one straight run."""
    steps = 40
    straight = tiny_pretrain_job(tmp_path, output_dir=str(tmp_path / "straight"),
                                 train={"max_steps": steps, "eval_every": 10, "eval_batches": 1})
    done = run_cli("train", "--config", str(write_job(tmp_path / "straight.yaml", straight)))
    assert done.returncode == 0, done.stdout + done.stderr

    job = dict(straight, output_dir=str(tmp_path / "resumed"))
    config = write_job(tmp_path / "resumed.yaml", job)
    first = _interrupt_after(config, tmp_path / "resumed", min_step=3)
    assert first.returncode == 130, first.stdout
    stopped_at = rows(tmp_path / "resumed", "end")[0]["step"]
    assert stopped_at < steps, "the run finished before it could be interrupted"
    second = run_cli("train", "--config", str(config), "--resume")
    assert second.returncode == 0, second.stdout + second.stderr
    start = rows(tmp_path / "resumed", "start")[-1]
    assert start["resumed_from"].endswith(f"step-{stopped_at:08d}") and start["step"] == stopped_at

    expected, got = _losses_by_step(tmp_path / "straight"), _losses_by_step(tmp_path / "resumed")
    assert sorted(got) == list(range(1, steps + 1))
    assert got == expected  # exact float equality
    evals = {r["step"]: r["eval_loss"] for r in rows(tmp_path / "resumed", "eval")}
    assert evals == {r["step"]: r["eval_loss"] for r in rows(tmp_path / "straight", "eval")}


def test_changed_job_is_refused_unless_forced(tmp_path):
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 4, "save_every": 2})
    config = write_job(tmp_path / "job.yaml", job)
    assert run_cli("train", "--config", str(config)).returncode == 0
    refused = run_cli("train", "--config", str(config), "--resume", "--set", "optim.lr=0.5",
                      "--set", "train.max_steps=6")
    assert refused.returncode == 1
    assert "optim.lr: 0.01 -> 0.5" in refused.stderr and "max_steps" not in refused.stderr
    allowed = run_cli("train", "--config", str(config), "--resume", "--set", "train.max_steps=6",
                      "--set", "train.log_every=2")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    assert rows(tmp_path / "run", "end")[-1]["step"] == 6
    forced = run_cli("train", "--config", str(config), "--resume", "--resume-force", "--set", "optim.lr=0.5",
                     "--set", "train.max_steps=7")
    assert forced.returncode == 0, forced.stdout + forced.stderr


def test_resume_without_checkpoint_says_so(tmp_path):
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 2})
    config = write_job(tmp_path / "job.yaml", job)
    done = run_cli("train", "--config", str(config), "--resume")
    assert done.returncode == 1 and "no checkpoint to resume from" in done.stderr


KILLER = textwrap.dedent('''
    import sys, torch
    from pathlib import Path
    from transformers import LlamaConfig, LlamaForCausalLM
    from trainhub.engine.checkpoint import save_checkpoint
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256,
                                         num_hidden_layers=4, num_attention_heads=4))
    opt = torch.optim.AdamW(model.parameters())
    model(input_ids=torch.ones(1, 4, dtype=torch.long), labels=torch.ones(1, 4, dtype=torch.long)).loss.backward()
    opt.step()
    print("ready", flush=True)
    step = 0
    while True:
        step += 1
        save_checkpoint(Path(sys.argv[1]), step, model, opt, {"tokens": step}, {"name": "k"}, keep_last=2)
''')


def test_sigkill_during_saves_never_leaves_an_unloadable_checkpoint(tmp_path):
    """A process saving checkpoints in a loop is SIGKILLed at random moments; each time, what `latest`
    names must load completely (weights, optimizer, RNG, state)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainhub.engine.checkpoint import load_into
    from trainhub.resume import find_checkpoint

    rng = random.Random(0)
    run_dir = tmp_path / "run"
    trials, loaded_steps = 20, []
    for _ in range(trials):
        child = subprocess.Popen([sys.executable, "-c", KILLER, str(run_dir)], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait()
        if not (run_dir / "checkpoints" / "latest").exists():
            continue  # killed before the first save completed: nothing to resume, nothing broken
        checkpoint = find_checkpoint("latest", run_dir)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=128, intermediate_size=256,
                                             num_hidden_layers=4, num_attention_heads=4))
        state = load_into(checkpoint, model, torch.optim.AdamW(model.parameters()), torch.device("cpu"))
        loaded_steps.append(state["step"])
    assert len(loaded_steps) >= trials // 2, f"too few trials reached a first save: {loaded_steps}"


@pytest.mark.parametrize("policy", ["skip", "stop"])
def test_nonfinite_step_is_skipped_or_stops(tmp_path, policy):
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 8, "save_every": 2, "on_nonfinite": policy})
    config = write_job(tmp_path / "job.yaml", job)
    done = run_cli("train", "--config", str(config), env={"TRAINHUB_INJECT_NONFINITE": "5"})
    train = {r["step"]: r for r in rows(tmp_path / "run", "train")}
    assert train[5]["loss"] is None and train[5]["nonfinite_skipped"] == 1
    assert train[4]["nonfinite_skipped"] == 0
    end = rows(tmp_path / "run", "end")[-1]
    if policy == "skip":
        assert done.returncode == 0, done.stdout + done.stderr
        assert end["status"] == "completed" and end["nonfinite_skipped"] == 1
        assert all(train[s]["loss"] is not None for s in (6, 7, 8))
    else:
        assert done.returncode == 1
        assert end["status"] == "failed"
        assert "non-finite" in rows(tmp_path / "run", "error")[0]["message"]
        assert (tmp_path / "run" / "checkpoints" / "latest").read_text().strip() == "step-00000004"


def test_nonfinite_limit_stops_a_run_of_skips(tmp_path):
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 10, "nonfinite_limit": 3})
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)),
                   env={"TRAINHUB_INJECT_NONFINITE": "2,3,4,5"})
    assert done.returncode == 1
    assert "3 in a row" in rows(tmp_path / "run", "error")[0]["message"]
    end = rows(tmp_path / "run", "end")[-1]
    assert end["status"] == "failed" and end["step"] == 4  # skips at 2, 3, 4: the third in a row stops it


def test_planted_secret_appears_nowhere(tmp_path):
    secret = "hf_Planted5ecretValue0123456789"
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 3, "save_every": 2})
    # a backend that prints the token (some libraries echo their settings) must not leak it
    env = {"HF_TOKEN": secret, "WANDB_API_KEY": secret[::-1], "PYTHONWARNINGS": f"default::UserWarning:{secret}"}
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert secret.encode() not in blob and secret[::-1].encode() not in blob, path
    assert json.loads((tmp_path / "run" / "job.json").read_text())  # the job is there, without secrets
    assert os.environ.get("HF_TOKEN") != secret


def test_backend_stops_when_the_hub_is_killed(tmp_path):
    """SIGKILL the hub: the backend gets SIGTERM (PR_SET_PDEATHSIG), saves, and exits; it never trains on alone."""
    job = tiny_pretrain_job(tmp_path, train={"max_steps": 100_000})
    config = write_job(tmp_path / "job.yaml", job)
    hub = subprocess.Popen([sys.executable, "-m", "trainhub", "train", "--config", str(config)], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and '"event":"train"' in metrics.read_text()):
        time.sleep(0.1)
    hub.kill()
    hub.wait()
    deadline = time.time() + 60
    while time.time() < deadline and not rows(tmp_path / "run", "end"):
        time.sleep(0.2)
    end = rows(tmp_path / "run", "end")
    assert end and end[0]["status"] == "interrupted"


def test_a_finished_run_is_extended_with_resume_and_more_steps(tmp_path):
    """The last step is checkpointed, so `--resume --set train.max_steps=N` continues a completed run from
    where it ended; with a constant schedule its steps equal those of one longer run, bitwise on CPU."""
    constant = {"schedule": {"warmup_steps": 0, "decay": "constant"}}
    longer = tiny_pretrain_job(tmp_path, output_dir=str(tmp_path / "longer"), train={"max_steps": 10}, **constant)
    done = run_cli("train", "--config", str(write_job(tmp_path / "longer.yaml", longer)))
    assert done.returncode == 0, done.stdout + done.stderr

    config = write_job(tmp_path / "short.yaml", dict(longer, output_dir=str(tmp_path / "short"),
                                                     train={**longer["train"], "max_steps": 6}))
    first = run_cli("train", "--config", str(config))
    assert first.returncode == 0, first.stdout + first.stderr
    assert (tmp_path / "short" / "checkpoints" / "latest").read_text().strip() == "step-00000006"
    extended = run_cli("train", "--config", str(config), "--resume", "--set", "train.max_steps=10")
    assert extended.returncode == 0, extended.stdout + extended.stderr
    start = rows(tmp_path / "short", "start")[-1]
    assert start["step"] == 6 and start["resumed_from"].endswith("step-00000006")
    assert rows(tmp_path / "short", "end")[-1]["status"] == "completed"
    expected, got = _losses_by_step(tmp_path / "longer"), _losses_by_step(tmp_path / "short")
    assert sorted(got) == list(range(1, 11)) and got == expected
