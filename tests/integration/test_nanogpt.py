"""The nanogpt backend driving a real nanoGPT checkout through the CLI, on CPU, read from metrics.jsonl.

Runs only when NANOGPT_DIR names a checkout (git clone https://github.com/karpathy/nanoGPT); trainhub
never ships nanoGPT's code. The exported model is checked against the checkout's own model.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT, rows, run_cli, tiny_pretrain_job, write_job
from trainhub.metrics import read_rows

NANOGPT = os.environ.get("NANOGPT_DIR")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not NANOGPT, reason="NANOGPT_DIR is not set: point it at a nanoGPT checkout "
                        "(git clone https://github.com/karpathy/nanoGPT) to run the nanogpt integration tests")]

GPT2 = {"family": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32, "bias": True,
        "tokenizer": {"type": "train", "vocab_size": 400}}


def nano_job(tmp: Path, **train) -> dict:
    job = tiny_pretrain_job(tmp)
    job.update(name="tiny-nanogpt", backend={"type": "nanogpt", "repo": NANOGPT}, model={"init": GPT2})
    job["schedule"] = {"warmup_steps": 1}
    job["train"].update({"max_steps": 6, "eval_every": 3, "eval_batches": 2, "keep_last": 1,
                         "on_nonfinite": "stop", **train})
    return job


def train(tmp: Path, job: dict, *extra: str):
    done = run_cli("train", "--config", str(write_job(tmp / "job.yaml", job)), *extra)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def nanogpt_logits(ckpt_path: Path, idx):
    """The checkout's own GPT on the checkpoint (read, as nanoGPT's resume reads it)."""
    import torch

    spec = importlib.util.spec_from_file_location("nanogpt_model", Path(NANOGPT) / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    model = module.GPT(module.GPTConfig(**ckpt["model_args"]))
    model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in ckpt["model"].items()})
    with torch.no_grad():
        logits, _ = model.eval()(idx, targets=idx)  # with targets it returns every position's logits
    return logits


def test_train_export_resume_and_continue(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    run = tmp_path / "run"
    done = train(tmp_path, nano_job(tmp_path))
    parsed = read_rows(run / "metrics.jsonl")  # every row validates
    assert parsed[0].event == "start" and parsed[-1].event == "end" and parsed[-1].status == "completed"
    assert [r["step"] for r in rows(run, "train")] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows(run, "eval")] == [0, 3, 6]
    assert all(r["tokens_per_s"] > 0 and r["loss"] > 0 for r in rows(run, "train"))
    assert rows(run, "train")[-1]["tokens"] == 6 * 8 * 32
    assert [r["step"] for r in rows(run, "checkpoint")] == [3, 6, 6]
    assert rows(run, "checkpoint")[-1]["path"] == str(run / "final")
    assert "loss" in done.stdout and "tok/s" in done.stdout  # the live view

    start = rows(run, "start")[0]
    log = (run / "nanogpt.log").read_text()
    reported = float(re.search(r"number of parameters: ([\d.]+)M", log)[1])
    assert reported == round((start["params_total"] - 32 * 32) / 1e6, 2)  # nanoGPT excludes positions too
    assert "found vocab_size" in log and "Overriding config with" in log  # kept verbatim, not lost
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-00000006"
    assert not (run / "checkpoints" / "step-00000003").exists() or \
        (run / "checkpoints" / "best").read_text().strip() == "step-00000003"  # keep_last 1 (+ best)

    model = AutoModelForCausalLM.from_pretrained(run / "final")
    idx = torch.randint(0, 300, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = model(idx).logits
    torch.testing.assert_close(ours, nanogpt_logits(run / "checkpoints" / "step-00000006" / "ckpt.pt", idx),
                               rtol=1e-5, atol=1e-5)

    # the real run to GGUF through the CLI, verified in llama.cpp: final/ at q8_0, and a checkpoint's ckpt.pt at f16
    if importlib.util.find_spec("llama_cpp") is not None:
        out = tmp_path / "gguf"
        done = run_cli("export", str(run), "--format", "gguf", "--quant", "q8_0", "-o", str(out))
        assert done.returncode == 0, done.stdout + done.stderr
        done = run_cli("export", str(run), "--checkpoint", "step-00000006", "--format", "gguf", "--quant", "f16",
                       "-o", str(out))
        assert done.returncode == 0, done.stdout + done.stderr
        files = json.loads((out / "export.json").read_text())["files"]
        assert set(files) == {"tiny-nanogpt-q8_0.gguf", "tiny-nanogpt-f16.gguf"}
        assert all(f["verification"]["passed"] for f in files.values()), files

    # --resume: nanoGPT's init_from='resume' from the latest checkpoint, on to step 9
    train(tmp_path, nano_job(tmp_path, max_steps=9), "--resume")
    resumed = rows(run, "start")[-1]
    assert resumed["resumed_from"].endswith("step-00000006") and resumed["step"] == 6
    assert [r["step"] for r in rows(run, "train")][6:] == [7, 8, 9]
    assert rows(run, "end")[-1]["step"] == 9 and rows(run, "end")[-1]["status"] == "completed"
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-00000009"

    # continuing the run's checkpoint in a new run: weights kept, iterations from 0
    other = tmp_path / "more"
    job = nano_job(tmp_path, max_steps=3)
    job.update(output_dir=str(other), model={"path": str(run / "checkpoints" / "step-00000009" / "ckpt.pt")})
    train(tmp_path, job)
    first_eval = rows(other, "eval")[0]
    assert first_eval["step"] == 0 and first_eval["eval_loss"] < rows(run, "eval")[0]["eval_loss"] - 0.5
    assert any("continuing" in n for n in rows(other, "start")[0]["notes"])


def test_dry_run_is_one_iteration(tmp_path):
    run = tmp_path / "run"
    train(tmp_path, nano_job(tmp_path), "--dry-run")
    assert [r["event"] for r in rows(run)] == ["start", "eval", "train", "end"]
    assert rows(run, "train")[0]["step"] == 1 and rows(run, "end")[0]["status"] == "completed"
    assert not (run / "final").exists() and not (run / "checkpoints").exists()


def test_shipped_config_validates_with_the_checkout():
    done = run_cli("validate", "--config", "config/pretrain_nanogpt.yaml", "--set", f"backend.repo={NANOGPT}")
    assert done.returncode == 0, done.stderr
    assert (DATA / "stories.jsonl").is_file()


def test_ctrl_c_stops_nanogpt_and_keeps_the_last_checkpoint(tmp_path):
    run = tmp_path / "run"
    config = write_job(tmp_path / "job.yaml", nano_job(tmp_path, max_steps=400, eval_every=2))
    hub = subprocess.Popen([sys.executable, "-m", "trainhub", "train", "--config", str(config)], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and not (run / "checkpoints" / "latest").exists():
        time.sleep(0.1)
    hub.send_signal(signal.SIGINT)
    out, _ = hub.communicate(timeout=120)
    assert hub.returncode == 130, out
    end = rows(run, "end")[-1]
    assert end["status"] == "interrupted" and end["step"] < 400
    assert (run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip() / "ckpt.pt").is_file()
    assert not (run / "final").exists()
