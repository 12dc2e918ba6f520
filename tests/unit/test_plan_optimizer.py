"""`trainhub plan`'s optimizer groups: native asks its engine (`python -m trainhub.engine describe`, since the hub
imports no torch) which parameters each optimizer steps at which peak rate; a model it cannot build is one line
saying why, and the rest of the plan stands. The other backends say in one line what they do with groups."""

from __future__ import annotations

from tests.conftest import run_cli, tiny_pretrain_job, write_job
from trainhub.job import Job
from trainhub.runners import RUNNERS

WIDE = {"COLUMNS": "300"}  # rich wraps at the terminal width; keep every line whole


def _section(stdout: str) -> list[str]:
    """The lines under `optimizer groups:`, whitespace collapsed."""
    lines = stdout.splitlines()
    start = lines.index("optimizer groups:")
    return [" ".join(line.split()) for line in lines[start + 1:]]


def test_plan_lists_the_muon_groups_with_their_rates(tmp_path):
    job = tiny_pretrain_job(tmp_path, model={"init": {"tie_embeddings": False}},
                            optim={"type": "muon", "lr": 0.01, "lr_mult": {"embed": 2.0, "head": 0.1}})
    done = run_cli("plan", "-c", str(write_job(tmp_path / "job.yaml", job)), env=WIDE)
    assert done.returncode == 0, done.stderr
    assert "-m trainhub.engine --run-dir" in done.stdout  # the rest of the plan is there, the groups after it
    section = _section(done.stdout)
    by_role = {line.split()[0]: line for line in section[1:]}
    assert section[0].startswith("optim muon: peak lr 0.01")
    assert set(by_role) == {"embed", "head", "matrix", "vector"}
    assert by_role["matrix"].startswith("matrix muon lr 0.01 (x1) weight_decay 0.1 14 tensors, 18,432 params: "
                                        "model.layers.0.self_attn.q_proj.weight")
    assert by_role["embed"].startswith("embed adamw lr 0.02 (x2) weight_decay 0 1 tensors, 12,800 params: "
                                       "model.embed_tokens.weight")
    assert by_role["head"].startswith("head adamw lr 0.001 (x0.1) weight_decay 0 1 tensors, 12,800 params: "
                                      "lm_head.weight")
    assert by_role["vector"].startswith("vector adamw lr 0.01 (x1) weight_decay 0 5 tensors")
    assert not (tmp_path / "run").exists()  # plan writes no run folder for native


def test_the_hub_imports_no_torch_to_list_them(tmp_path):
    """The groups come from the engine's process; plan's own stays light (pydantic, typer, yaml, rich)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    path = write_job(tmp_path / "job.yaml", tiny_pretrain_job(tmp_path, optim={"type": "muon", "lr": 0.01}))
    code = ("import sys; from typer.testing import CliRunner; from trainhub.cli import app; "
            f"out = CliRunner().invoke(app, ['plan', '-c', {str(path)!r}]).output; "
            "print('matrix muon' in out, sorted({'torch', 'transformers'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.stdout.split("\n")[-2] == "True []", done.stdout + done.stderr


def test_plan_says_why_the_groups_are_not_shown_and_shows_the_rest(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama",')  # cut short
    job = tiny_pretrain_job(tmp_path, optim={"type": "muon", "lr": 0.01})
    job["model"] = {"path": str(model)}
    done = run_cli("plan", "-c", str(write_job(tmp_path / "job.yaml", job)), env=WIDE)
    assert done.returncode == 0, done.stderr
    assert f"model: model.path: {model / 'config.json'} is not valid JSON" in done.stdout
    assert "distributed: single, 1 process(es)" in done.stdout
    section = _section(done.stdout)
    assert len(section) == 1
    assert section[0].startswith(f"not shown: model.path: cannot read the model config {model / 'config.json'}: ")


def test_other_backends_say_what_they_do_with_groups(tmp_path):
    job = Job.model_validate(tiny_pretrain_job(tmp_path, optim={"type": "adamw", "lr": 0.002, "weight_decay": 0.1,
                                                                "lr_mult": {"head": 0.5}}))
    trl = RUNNERS["trl"].optimizer_lines(job)
    assert trl == ["trl: trainhub's adamw (engine/optim), built in the child over transformers' model: the native "
                   "engine's role groups, each at its peak lr x optim.lr_mult (embed x1, head x0.5, matrix x1, "
                   "vector x1); --backend native's plan lists their tensors"]
    assert RUNNERS["unsloth"].optimizer_lines(job)[0].startswith("unsloth: trainhub's adamw (engine/optim), built "
                                                                 "in the child over Unsloth's model")
    plain = job.model_copy(update={"optim": job.optim.model_copy(update={"lr_mult": type(job.optim.lr_mult)()})})
    (factory,) = RUNNERS["llamafactory"].optimizer_lines(plain)
    assert "one learning rate (optim.lr 0.002)" in factory and "weight_decay 0.1 on all but biases and norms" in factory
    (nano,) = RUNNERS["nanogpt"].optimizer_lines(plain)
    assert "one learning rate (optim.lr 0.002)" in nano and "weight_decay 0.1 on tensors of 2 or more" in nano


def test_an_engine_that_dies_before_answering_is_named_with_its_last_words(tmp_path, monkeypatch):
    """No JSON on stdout (an environment without torch, a crash at import): the command, its exit code and the
    last line of its stderr."""
    import sys

    from trainhub.runners.native.runner import describe_in_engine

    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho 'Traceback (most recent call last):' >&2\n"
                      "echo \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n")
    python.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(python))
    job = Job.model_validate(tiny_pretrain_job(tmp_path))
    assert describe_in_engine(job) == [f"not shown: `{python} -m trainhub.engine describe` exited 1: "
                                       f"ModuleNotFoundError: No module named 'torch'"]
