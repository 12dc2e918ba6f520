"""The per-GPU presets (config/presets/h100*.yaml): each composes onto a real job and validates, says what its
comment says it measured, and the backend it names accepts the result on an H100 (but for its environment)."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from trainhub.compose import compose
from trainhub.host import Host
from trainhub.jobfile import resolve, validate
from trainhub.runners import RUNNERS

H100 = Host(gpus=("NVIDIA H100 80GB HBM3",))
JOBS = {  # each preset as a user names it
    "h100-full-ft": "extends: h100-full-ft\nmethod: sft\n",
    "h100-lora": "extends: h100-lora\nmethod: sft\n",
    "h100-qlora": "extends: h100-qlora\nmethod: sft\n",
    "h100-long-context": "extends: h100-long-context\nmethod: sft\n",
}


def _job(tmp_path, name):
    data = ROOT / "config" / "data" / "chat.jsonl"
    path = tmp_path / "job.yaml"
    path.write_text(JOBS[name] + f"name: {name}\nmodel: {{path: some/model}}\n"
                    f"data: {{train: {data}, format: messages}}\ntrain: {{max_steps: 10}}\n")
    raw, origins = compose(path)
    return resolve(validate(raw, str(path), origins), cwd=tmp_path, origins=origins)


def test_every_h100_preset_is_named_here():
    assert {p.stem for p in (ROOT / "config" / "presets").glob("h100-*.yaml")} == set(JOBS)


@pytest.mark.parametrize("name", JOBS)
def test_preset_composes_validates_and_its_backend_accepts_it(tmp_path, name):
    job = _job(tmp_path, name)
    assert (job.train.precision.type, job.train.micro_batch_size) == ("bf16", 1 if "long" in name else 4)
    problems = [p for p in RUNNERS[job.backend.type].check(job, H100) if p.where != "backend"]
    assert problems == [], problems


def test_presets_say_what_was_measured(tmp_path):
    full = _job(tmp_path, "h100-full-ft")
    assert (full.backend.type, full.backend.compile, full.train.grad_checkpointing) == ("native", True, "none")
    lora = _job(tmp_path, "h100-lora")
    assert (lora.backend.type, lora.adapter.type, lora.adapter.rank, lora.train.grad_checkpointing) == \
        ("unsloth", "lora", 16, "none")
    qlora = _job(tmp_path, "h100-qlora")
    assert (qlora.adapter.type, qlora.train.grad_checkpointing) == ("qlora", "full")
    long = _job(tmp_path, "h100-long-context")
    assert (long.data.max_length, long.train.grad_checkpointing, long.backend.compile) == (8192, "selective", True)
