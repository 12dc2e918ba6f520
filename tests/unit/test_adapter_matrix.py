"""Every adapter x method x backend the schema allows is either accepted by the backend's check (and the backend
names that adapter among its features, which its translation acts on) or refused naming the backend and the
adapter; `auto` never picks a backend that refuses. No silent full fine-tune for a qlora job."""

from __future__ import annotations

import pytest

from trainhub.host import Host
from trainhub.job import METHOD_FORMATS, Job
from trainhub.jobfile import JobError
from trainhub.runners import RUNNERS, choose
from trainhub.runners.base import ADAPTERS

CPU, GPU = Host(), Host(gpus=("NVIDIA H100 80GB HBM3",))


def _job(method: str, adapter: str, backend: str = "auto") -> Job:
    spec = {"type": "grpo", "rewards": [{"function": "trainhub.rewards:exact_match"}]} if method == "grpo" else method
    return Job.model_validate({
        "name": "t", "backend": backend, "model": {"path": "some/model"}, "method": spec, "adapter": adapter,
        "data": {"train": "x.jsonl", "format": METHOD_FORMATS[method][0]},
        "train": {"max_steps": 2, "on_nonfinite": "stop"}})


def adapter_refusals(backend: str, job: Job, host: Host) -> list[str]:
    return [p.message for p in RUNNERS[backend].check(job, host) if p.where == "adapter.type"]


@pytest.mark.parametrize("backend", sorted(RUNNERS))
@pytest.mark.parametrize("method", sorted(METHOD_FORMATS))
@pytest.mark.parametrize("adapter", ADAPTERS)
def test_each_combination_is_accepted_or_refused_by_name(backend, method, adapter):
    runner = RUNNERS[backend]
    refused = adapter_refusals(backend, _job(method, adapter, backend), GPU)
    if adapter in runner.features and not refused:
        return
    assert len(refused) == 1 and refused[0].startswith(f"{backend}") and adapter in refused[0], refused
    if adapter in runner.features:  # a limit of one method (native's grpo and qlora), not of the backend
        assert method in refused[0], refused


@pytest.mark.parametrize("method", sorted(METHOD_FORMATS))
def test_auto_never_picks_a_backend_that_cannot_train_qlora(method):
    try:
        runner, _why = choose(_job(method, "qlora"), CPU)
    except JobError as err:
        assert "qlora" in str(err)
        return
    assert "qlora" in runner.features, runner.name
