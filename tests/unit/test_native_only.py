"""model.impl and train.loss choose the native engine's own model and loss seam: every other backend refuses
them when set away from auto, naming itself and the key; native takes them."""

from __future__ import annotations

import pytest

from trainhub.host import Host
from trainhub.job import Job
from trainhub.runners import RUNNERS

GPU_HOST = Host(gpus=("NVIDIA H100 80GB HBM3",))


def _job(**train_model) -> Job:
    return Job.model_validate({
        "name": "t", "model": {"path": "some/model", **train_model.get("model", {})}, "method": "pretrain",
        "data": {"train": "x.jsonl", "format": "text"}, "train": {"max_steps": 2, **train_model.get("train", {})}})


def found(backend: str, job: Job) -> dict[str, str]:
    return {p.where: p.message for p in RUNNERS[backend].check(job, GPU_HOST) if p.where in ("model.impl", "train.loss")}


@pytest.mark.parametrize("backend", sorted(set(RUNNERS) - {"native"}))
def test_other_backends_refuse_the_native_settings(backend):
    assert found(backend, _job()) == {}
    got = found(backend, _job(model={"impl": "own"}, train={"loss": "chunked"}))
    assert got == {"model.impl": f"{backend} trains its own stack's model; model.impl own applies to backend "
                                 f"native only",
                   "train.loss": f"{backend} computes the loss its own way; train.loss chunked applies to backend "
                                 f"native only"}


def test_native_takes_them():
    assert found("native", _job(model={"impl": "hf"}, train={"loss": "eager"})) == {}


def test_native_refuses_kernels_that_cannot_run_here(monkeypatch):
    """backend.kernels triton or liger without a CUDA GPU is a problem naming the key (auto and none are not);
    `plan` says which kernels the run takes."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)

    def problems(kernels: str, host: Host) -> dict[str, str]:
        job = _job().model_copy(update={"backend": {"type": "native", "kernels": kernels}})
        job = Job.model_validate(job.model_dump())
        return {p.where: p.message for p in RUNNERS["native"].check(job, host) if p.where == "backend.kernels"}

    assert problems("triton", Host()) == {
        "backend.kernels": "backend.kernels triton needs a CUDA GPU; none is visible (use auto or none)"}
    assert problems("auto", Host()) == problems("none", Host()) == problems("triton", GPU_HOST) == {}
    job = Job.model_validate({**_job().model_dump(), "backend": {"type": "native", "kernels": "none"}})
    assert "  kernels: none (backend.kernels; engine/kernels)" in RUNNERS["native"].plan_lines(job)
