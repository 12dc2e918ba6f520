"""Never lose a run: exact resume, refused job changes, crash-safe saves, non-finite guards, secrets."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, rows, run_cli, tiny_pretrain_job, write_job

pytestmark = pytest.mark.slow  # the real `train` command, or a process saving and SIGKILLed


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


SAVER = textwrap.dedent("""
    import json, os, shutil, signal, sys, time
    from pathlib import Path
    import torch
    torch.set_num_threads(1)  # no thread pool for the forked children to inherit
    from transformers import LlamaConfig, LlamaForCausalLM
    from trainhub.engine.checkpoint import save_checkpoint

    root = Path(sys.argv[1])
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, max_position_embeddings=16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)

    def train_step():
        ids = torch.arange(8).view(1, 8)
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()

    train_step()
    save_checkpoint(root / "base", 1, model, opt, {"tokens": 8}, {"name": "k"}, keep_last=1)
    train_step()  # step 2's weights and optimizer state differ from step 1's

    # What a save does to the file system, as Python's audit hooks see it; torch.save (optimizer.pt, rng.pt)
    # writes from C++, so it announces itself. safetensors writes from Rust: the event after it is the mark.
    WATCHED = {"open", "os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "torch.save"}
    _save = torch.save

    def audited_save(obj, f, *args, **kwargs):
        sys.audit("torch.save", os.fspath(f))
        return _save(obj, f, *args, **kwargs)

    torch.save = audited_save

    def trial(run, kill_at):
        # A forked child saves step 2 into `run`, reporting every file-system event under it; at event
        # number kill_at it stops before doing it, and this process SIGKILLs it there.
        shutil.copytree(root / "base", run)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            count, busy = 0, False

            def hook(event, args):
                nonlocal count, busy
                if busy or event not in WATCHED or isinstance(args[0], int):
                    return
                paths = [os.fsdecode(os.fspath(a)) for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
                if os.path.isabs(paths[0]) and not paths[0].startswith(f"{run}/"):
                    return  # an import, or anything else outside the run folder
                busy, count = True, count + 1
                names = [os.path.relpath(p, run) if os.path.isabs(p) else p for p in paths]
                os.write(w, (json.dumps([event, *names]) + "\\n").encode())
                if count == kill_at:
                    os.write(w, b"stopped\\n")
                    time.sleep(600)
                busy = False

            sys.addaudithook(hook)
            save_checkpoint(run, 2, model, opt, {"tokens": 16}, {"name": "k"}, keep_last=1)
            os._exit(0)
        os.close(w)
        events = []
        with os.fdopen(r) as stream:
            for line in stream:
                if line == "stopped\\n":
                    os.kill(pid, signal.SIGKILL)
                    break
                events.append(json.loads(line))
        _, status = os.waitpid(pid, 0)
        return {"dir": str(run), "events": events,
                "sigkilled": os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
                "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None}

    complete = trial(root / "complete", kill_at=0)
    trials = [trial(root / f"killed-{k:03d}", kill_at=k) for k in range(1, len(complete["events"]) + 1)]
    print(json.dumps({"complete": complete, "trials": trials}))
""")


def test_sigkill_at_every_step_of_a_save_never_leaves_an_unloadable_checkpoint(tmp_path):
    """A save of step 2 over a complete step 1 (keep_last 1) is SIGKILLed before each of its file-system
    operations in turn: every time, `latest` names a checkpoint that loads completely (weights, optimizer,
    RNG, state), the one of step 1 until `latest` itself is replaced and step 2's from then on, and the
    next save completes."""
    import torch
    from safetensors.torch import load_file
    from transformers import LlamaConfig, LlamaForCausalLM

    from trainhub.engine.checkpoint import load_into, save_checkpoint
    from trainhub.resume import find_checkpoint

    done = subprocess.run([sys.executable, "-c", SAVER, str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    complete, trials = report["complete"], report["trials"]
    assert complete["exit"] == 0 and not complete["sigkilled"]
    events = complete["events"]
    swap = events.index(["os.rename", "checkpoints/latest.tmp", "checkpoints/latest"])
    # the kills cover the payload, the rename into place, the pointer and the deletion of step 1 (retention)
    assert ["torch.save", "checkpoints/.tmp-step-00000002/optimizer.pt"] in events
    assert ["os.rename", "checkpoints/.tmp-step-00000002", "checkpoints/step-00000002"] in events
    assert ["os.rmdir", "checkpoints/step-00000001"] in events
    assert len(trials) == len(events)

    reference = {1: tmp_path / "base" / "checkpoints" / "step-00000001",
                 2: tmp_path / "complete" / "checkpoints" / "step-00000002"}

    def fresh():
        model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                             num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=16))
        return model, torch.optim.AdamW(model.parameters(), lr=1e-2)

    for k, t in enumerate(trials, start=1):
        where = f"killed before event {k} {events[k - 1]}"
        assert t["sigkilled"], where
        assert t["events"] == events[:k], where  # the kill came exactly there
        run = Path(t["dir"])
        model, opt = fresh()
        state = load_into(find_checkpoint("latest", run), model, opt, torch.device("cpu"))
        expected = 1 if k <= swap + 1 else 2  # event swap + 1 (1-based) is latest's replacement itself
        assert state["step"] == expected, where
        weights = load_file(reference[expected] / "model.safetensors")
        assert all(torch.equal(model.state_dict()[name], w) for name, w in weights.items()), where
        assert {s["step"].item() for s in opt.state_dict()["state"].values()} == {float(expected)}, where
        # the run goes on: the next save completes and becomes latest
        again = save_checkpoint(run, 3, model, opt, {"tokens": 24}, {"name": "k"}, keep_last=1)
        assert find_checkpoint("latest", run) == again, where


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
