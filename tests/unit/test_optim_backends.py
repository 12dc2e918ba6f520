"""Which backend runs which optimizer: a backend's check refuses an optim.type it cannot run with a Problem at
optim.type that names the backend and the type; a missing optional package is named with what to install."""

from __future__ import annotations

import pytest

from trainhub.host import Host
from trainhub.job import OPTIM_TYPES, Job
from trainhub.runners import RUNNERS

ABLE = {
    "native": set(OPTIM_TYPES),
    "trl": set(OPTIM_TYPES) - {"sophia"},  # trainhub's optimizer inside the Trainer; no Hessian step there
    "unsloth": {"adamw", "muon", "adamw8bit"},  # what its own environment holds
    "llamafactory": {"adamw"},
    "nanogpt": {"adamw"},
}
GPU_HOST = Host(gpus=("NVIDIA H100 80GB HBM3",))  # unsloth checks nothing else on a host without a GPU


def _job(optim: str, method: str = "pretrain") -> Job:
    return Job.model_validate({
        "name": "t", "model": {"path": "some/model"}, "method": method, "optim": optim,
        "data": {"train": "x.jsonl", "format": "text" if method == "pretrain" else "messages"},
        "train": {"max_steps": 2}})


def optim_problems(backend: str, optim: str) -> list[str]:
    return [p.message for p in RUNNERS[backend].check(_job(optim), GPU_HOST) if p.where == "optim.type"]


def test_every_backend_is_covered():
    assert set(ABLE) == set(RUNNERS)


@pytest.mark.parametrize("backend", list(ABLE))
@pytest.mark.parametrize("optim", OPTIM_TYPES)
def test_backend_runs_or_refuses_by_name(backend, optim):
    found = optim_problems(backend, optim)
    if optim in ABLE[backend]:
        assert found == []  # the packages are installed in the test environment
    else:
        assert len(found) == 1 and found[0].startswith(f"{backend} cannot run optim.type {optim}: ")


def test_a_missing_package_is_named(monkeypatch):
    import trainhub.host

    monkeypatch.setattr(trainhub.host, "missing_modules", lambda *names: list(names))
    assert optim_problems("native", "lion") == [
        "native: optim.type lion needs the package pytorch-optimizer (pip install 'trainhub[optim]')"]
    assert optim_problems("native", "muon") == []  # torch's own and ours: nothing to install


def test_trl_plan_names_the_optimizer():
    lines = RUNNERS["trl"].plan_lines(_job("muon", method="sft"))
    line = next(x for x in lines if x.lstrip().startswith("optimizers ="))
    assert "trainhub muon(lr=0.0003, momentum=0.95" in line and "update_scale=match_rms_adamw" in line


@pytest.mark.parametrize("optim", sorted(ABLE["trl"]))
def test_trl_schedule_sets_the_rates_native_sets(optim):
    """Under trl (and unsloth) the optimizer is trainhub's with torch's LambdaLR as the schedule: each step every
    group's rate is what native's set_lr gives it (the Muon groups' and the AdamW groups' alike)."""
    import copy

    import torch

    from tests.unit.optim_helpers import tiny_llama
    from trainhub.engine.optim import build_optimizer, set_lr
    from trainhub.engine.schedule import lr_at
    from trainhub.runners.trl.trainer import optimizer_and_schedule

    job = _job({"type": optim, "adamw": {"lr": 0.01}} if optim == "muon" else optim, method="sft")
    job = job.model_copy(update={"schedule": job.schedule.model_copy(update={"warmup_steps": 3})})
    model = tiny_llama()
    trl_opt, sched = optimizer_and_schedule(job, model, torch.device("cpu"), total=10)
    native = build_optimizer(job.optim, copy.deepcopy(model), torch.device("cpu"))
    for step in range(10):
        set_lr(native, lr_at(step, peak=job.optim.lr, total=10, schedule=job.schedule))
        assert [g["lr"] for g in trl_opt.param_groups] == pytest.approx([g["lr"] for g in native.param_groups])
        sched.step()
