"""`backend: auto` and measured speed (runners/speed.py): every number in the table is in the results file it
cites; the fastest measured backend wins only where measurements compare it with the registry's first choice;
elsewhere the registry's order stands and the reason says no measurement decided it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from trainhub.host import Host
from trainhub.job import Job
from trainhub.runners import choose, speed
from trainhub.runners.speed import MEASURED, Measured, gpu_class, prefer

ROOT = Path(__file__).resolve().parents[2]
H100 = Host(gpus=("NVIDIA H100 80GB HBM3",))


def _job(adapter="lora", ckpt=False, method="sft", data_format="messages"):
    return Job.model_validate({"name": "t", "model": {"path": "some/model"}, "method": method, "adapter": adapter,
                               "data": {"train": "x.jsonl", "format": data_format},
                               "train": {"max_steps": 1, "grad_checkpointing": ckpt}})


@pytest.mark.parametrize("row", MEASURED, ids=lambda m: f"{m.gpu}-{m.adapter}-{m.backend}-{m.checkpointing}")
def test_each_number_is_in_the_results_file_it_cites(row):
    text = (ROOT / row.source.split()[0]).read_text()
    assert f"{row.tokens_per_s:,}" in text, (row.source, row.tokens_per_s)


def test_gpu_class_from_the_name():
    assert gpu_class(H100) == "h100"
    assert gpu_class(Host(gpus=("NVIDIA H200",))) == "h200"
    assert gpu_class(Host(gpus=("NVIDIA A100-SXM4-80GB",))) == "a100"
    assert gpu_class(Host()) is None


def _table(monkeypatch, native, unsloth):
    rows = [Measured("h100", "causal-lm", "lora", False, name, tps, "x.md", "setup")
            for name, tps in (("native", native), ("unsloth", unsloth)) if tps]
    monkeypatch.setattr(speed, "MEASURED", tuple(rows))


def test_native_is_preferred_where_measured_faster(monkeypatch):
    _table(monkeypatch, native=80_000, unsloth=72_000)
    picked, why = prefer(_job(), H100, ["native", "trl", "unsloth"])
    assert picked == "native" and "80,000" in why and "72,000" in why


def test_a_faster_measured_backend_wins_over_the_registry_order(monkeypatch):
    _table(monkeypatch, native=40_000, unsloth=72_000)
    picked, why = prefer(_job(), H100, ["native", "trl", "unsloth"])
    assert picked == "unsloth" and "fastest measured" in why
    assert prefer(_job(), H100, ["native", "trl"])[0] == "native"  # unsloth not usable: no comparison
    assert prefer(_job(ckpt=True), H100, ["native", "unsloth"])[0] == "native"  # measured without checkpointing


def test_without_a_native_measurement_the_registry_order_stands_and_says_so(monkeypatch):
    _table(monkeypatch, native=None, unsloth=72_000)
    picked, why = prefer(_job(), H100, ["native", "unsloth"])
    assert picked == "native" and "no measured comparison" in why and "unsloth 72,000" in why


def test_plan_reason_names_the_rule_on_a_cpu_host():
    runner, reasons = choose(_job(adapter="qlora"), Host())
    picked = [r for r in reasons if ": picked:" in r]
    assert runner.name == "native" and len(picked) == 1
    assert re.search(r"no measured comparison for causal-lm qlora \(without checkpointing\) on a host with no GPU class", picked[0])


def test_native_plan_names_checkpointing_offload_and_qlora():
    job = Job.model_validate({"name": "t", "backend": "native", "model": {"path": "some/model"}, "method": "sft",
                              "adapter": "qlora", "data": {"train": "x.jsonl", "format": "messages"},
                              "train": {"max_steps": 1, "grad_checkpointing": "selective", "activation_offload": True}})
    from trainhub.runners import RUNNERS

    text = "\n".join(RUNNERS["native"].plan_lines(job))
    assert "activation checkpointing: selective, saved activations offloaded" in text and "NF4" in text


def test_grpo_picks_native_from_a_measured_comparison():
    grpo = {"type": "grpo", "rewards": [{"function": "trainhub.rewards:exact_match"}]}
    picked, why = prefer(_job(adapter="full", method=grpo, data_format="prompt"), H100, ["native", "trl"])
    assert picked == "native" and "fastest measured for grpo full" in why and "trl 1,761" in why
