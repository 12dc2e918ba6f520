"""The llamafactory backend through the real CLI: its environment, created by `trainhub env setup` on a
clean machine (once per session, tests/conftest.py), real LLaMA-Factory training on a tiny model, rows
read from metrics.jsonl."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import ROOT, rows, run_cli, tiny_pretrain_job, write_job
from trainhub.metrics import read_rows

pytestmark = pytest.mark.slow  # creates LLaMA-Factory's environment (~2.5 min), trains through it


def _sft(tmp, model, **train) -> dict:
    job = tiny_pretrain_job(tmp)
    job.update({"name": "lf-sft", "backend": "llamafactory", "model": {"path": str(model)}, "method": "sft",
                "adapter": {"type": "lora", "rank": 8, "alpha": 16},
                "data": {"train": str(ROOT / "config/data/chat_eval.jsonl"), "format": "messages", "max_length": 64},
                "optim": {"type": "adamw", "lr": 3e-3}, "schedule": {"warmup_steps": 0}})
    job["train"] = {"micro_batch_size": 4, "max_steps": 3, "precision": "fp32", "log_every": 1,
                    "on_nonfinite": "stop", **train}
    return job


def _train(tmp, job, *extra, env):
    return run_cli("train", "--config", str(write_job(tmp / "job.yaml", job)), *extra, env=env)


def test_environment_is_ready_and_imports_llamafactory(llamafactory_env):
    done = run_cli("doctor", env={**llamafactory_env, "COLUMNS": "400"})  # runs the import check again
    assert done.returncode == 0, done.stdout + done.stderr
    env_row = [line for line in done.stdout.splitlines() if line.startswith("│ llamafactory") and "python" in line]
    assert len(env_row) == 1 and "│ ready" in env_row[0] and "llamafactory 0.9.5" in env_row[0], done.stdout
    manifest = json.loads((ROOT / ".cache/envs/llamafactory/env.json").read_text())
    v = manifest["versions"]  # printed by `import llamafactory` and its stack inside the environment
    assert v["llamafactory"] == "0.9.5" and v["torch"] == "2.13.0+cpu" and v["torch_cuda"] == "None"
    assert v["torchaudio_extension"] == "False"  # its CUDA-linked libraries are gone: pure-Python torchaudio
    freeze = (ROOT / ".cache/envs/llamafactory/freeze.txt").read_text().lower()
    assert "llamafactory==0.9.5" in freeze and "torchvision" not in freeze


def test_lora_sft_three_steps_rows_like_native(tmp_path, pretrained, llamafactory_env):
    done = _train(tmp_path, _sft(tmp_path, pretrained), env=llamafactory_env)
    assert done.returncode == 0, done.stdout + done.stderr
    run = tmp_path / "run"
    parsed = read_rows(run / "metrics.jsonl")  # every row validates against the common schema
    assert [r.event for r in parsed] == ["start", "train", "train", "train", "checkpoint", "end"]
    start, train, end = rows(run, "start")[0], rows(run, "train"), rows(run, "end")[0]
    assert start["backend"] == "llamafactory" and start["max_steps"] == 3 and start["precision"] == "fp32"
    assert 0 < start["params_trainable"] < start["params_total"]  # LoRA
    assert [r["step"] for r in train] == [1, 2, 3] and end["status"] == "completed"
    assert train[0]["lr"] == 3e-3 and train[-1]["loss"] != train[0]["loss"]
    assert train[-1]["tokens"] > train[0]["tokens"] > 0 and end["final_loss"] == train[-1]["loss"]
    native_keys = {"schema", "time", "run_id", "event", "step", "loss", "lr", "grad_norm", "tokens", "tokens_per_s",
                   "mfu", "mem_gb", "epoch", "nonfinite_skipped"}
    assert set(train[0]) == native_keys
    assert (run / "checkpoints" / "adapter_model.safetensors").is_file()
    cfg = (run / "llamafactory.yaml").read_text()
    assert "stage: sft" in cfg and "lora_rank: 8" in cfg


def test_dpo_two_steps(tmp_path, pretrained, llamafactory_env):
    pairs = tmp_path / "pairs.jsonl"
    chats = [json.loads(line) for line in (ROOT / "config/data/chat_eval.jsonl").read_text().splitlines()][:8]
    pairs.write_text("".join(json.dumps({"prompt": c["messages"][-2]["content"], "chosen": c["messages"][-1]["content"],
                                         "rejected": "I do not know."}) + "\n" for c in chats))
    job = _sft(tmp_path, pretrained, max_steps=2)
    job.update({"name": "lf-dpo", "method": {"type": "dpo", "beta": 0.1},
                "data": {"train": str(pairs), "format": "preference", "max_length": 64}})
    done = _train(tmp_path, job, env=llamafactory_env)
    assert done.returncode == 0, done.stdout + done.stderr
    train = rows(tmp_path / "run", "train")
    assert [r["step"] for r in train] == [1, 2]
    assert abs(train[0]["loss"] - 0.693147) < 1e-4  # the policy starts equal to its reference: log 2
    assert train[1]["loss"] < train[0]["loss"]  # one step on these pairs already prefers the chosen answers
    assert train[1]["method"]["reward_margin"] > 0
    assert "stage: dpo" in (tmp_path / "run" / "llamafactory.yaml").read_text()


def test_dry_run_then_resume(tmp_path, pretrained, llamafactory_env):
    job = _sft(tmp_path, pretrained, max_steps=2, save_every=2)
    done = _train(tmp_path, job, env=llamafactory_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    done = _train(tmp_path, job, "--resume", "--dry-run", env=llamafactory_env)
    assert done.returncode == 0, done.stdout + done.stderr
    starts = rows(tmp_path / "run", "start")
    assert starts[-1]["resumed_from"].endswith("checkpoint-2") and starts[-1]["step"] == 2
    assert [r["step"] for r in rows(tmp_path / "run", "train")] == [1, 2, 3]  # the dry run: one step more


def test_missing_environment_stops_before_work(tmp_path, pretrained):
    done = _train(tmp_path, _sft(tmp_path, pretrained), env={"TRAINHUB_ENVS": str(tmp_path / "none")})
    assert done.returncode == 1
    assert "trainhub env setup llamafactory" in done.stderr and not (tmp_path / "run").exists()


LF_RENDER = """
import json, sys
from transformers import AutoTokenizer
from llamafactory.hparams import DataArguments
from llamafactory.data.template import get_template_and_fix_tokenizer
tok = AutoTokenizer.from_pretrained(sys.argv[1])
template = get_template_and_fix_tokenizer(tok, DataArguments(template=None))
m = json.loads(sys.argv[2])
ids, labels = [], []
for src, tgt in template.encode_multiturn(tok, m[1:], system=m[0]["content"]):
    ids += src + tgt
    labels += [-100] * len(src) + tgt
print(json.dumps([ids, labels]))
"""


def test_llamafactory_renders_a_conversation_as_native_does(pretrained, llamafactory_env):
    """With data.template null, LLaMA-Factory parses the tokenizer's chat template: the same token ids as
    the native engine; its labels add the newline after each assistant turn's <|im_end|> (the one
    difference in what the two backends train on; research/results/compare_backends.md)."""
    import subprocess

    from transformers import AutoTokenizer

    from trainhub.data.chat import encode_conversation

    convo = json.loads((ROOT / "config/data/chat.jsonl").read_text().splitlines()[0])["messages"]
    python = json.loads((ROOT / ".cache/envs/llamafactory/env.json").read_text())["python"]
    done = subprocess.run([python, "-c", LF_RENDER, str(pretrained), json.dumps(convo)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lf_ids, lf_labels = json.loads(done.stdout.splitlines()[-1])
    tok = AutoTokenizer.from_pretrained(pretrained)
    ids, labels = encode_conversation(tok, convo)
    assert lf_ids == ids
    extra = [i for i, (a, b) in enumerate(zip(labels, lf_labels, strict=True)) if a != b]
    assert [tok.decode([ids[i]]) for i in extra] == ["\n"] * 3  # three assistant turns
    assert all(labels[i] == -100 and ids[i - 1] == tok.convert_tokens_to_ids("<|im_end|>") for i in extra)


def test_report_compares_native_trl_and_llamafactory(tmp_path, pretrained, llamafactory_env):
    """Issue 30: the same LoRA SFT job on three backends, one report: every plot holds a series per run (per
    run and split for the loss), and a headless Chromium draws them all, with a screenshot kept as an artifact."""
    pytest.importorskip("trl")
    from tests.integration.test_runs_report import CHROMIUM, _DrawnPlots, _Page

    runs = []
    for backend in ("native", "trl", "llamafactory"):
        (tmp_path / backend).mkdir()
        job = _sft(tmp_path / backend, pretrained, max_steps=4, eval_every=2)
        job.update({"name": f"sft-{backend}", "backend": backend})
        job["data"]["eval"] = str(ROOT / "config/data/chat_eval.jsonl")
        done = _train(tmp_path / backend, job, env=llamafactory_env)
        assert done.returncode == 0, backend + done.stdout + done.stderr
        runs.append(str(tmp_path / backend / "run"))
    out, png = tmp_path / "report.html", tmp_path / "png"
    done = run_cli("report", *runs, "-o", str(out), "--png", str(png), env={"COLUMNS": "300"})
    assert done.returncode == 0, done.stdout + done.stderr
    page = _Page()
    page.feed(out.read_text())
    plots = {p["id"]: p for p in page.data["plots"]}
    labels = [s["label"] for s in plots["loss_step"]["series"]]
    assert labels == [f"sft-{b} ({b}) {split}" for b in ("native", "trl", "llamafactory") for split in ("train", "eval")]
    for pid in ("lr", "tokens_per_s", "grad_norm"):
        assert len(plots[pid]["series"]) == 3, pid
    assert all((png / f"{pid}.png").stat().st_size > 10_000 for pid in plots)
    differs = {r[1] for r in page.job_rows if r[0] == "diff"}
    assert {"name", "output_dir"} <= differs and any(k.startswith("backend") for k in differs)
    assert "adapter.rank" not in differs
    if CHROMIUM is None:
        pytest.skip("no chromium (apt-get install chromium): the page was checked, not drawn")
    browser = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--virtual-time-budget=20000", "--window-size=1400,2600"]
    dom = subprocess.run([*browser, "--dump-dom", out.as_uri()], capture_output=True, text=True, timeout=180)
    assert dom.returncode == 0, dom.stderr[-2000:]
    drawn = _DrawnPlots()
    drawn.feed(dom.stdout)
    expected = {f"plot-{pid}": len(p["series"]) for pid, p in plots.items()}
    assert drawn.traces == expected and drawn.drawn == {k: str(v) for k, v in expected.items()}
    shot = tmp_path / "report.png"
    done = subprocess.run([*browser, f"--screenshot={shot}", out.as_uri()], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0 and shot.stat().st_size > 50_000, done.stderr[-2000:]
    print(f"screenshot: {shot}")
