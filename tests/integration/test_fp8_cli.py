"""train.precision fp8 on a host without an FP8 GPU: refused by the hub before the engine starts, with the
key, the GPU capability needed and what to use instead."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import run_cli, tiny_pretrain_job, write_job


def test_fp8_on_a_cpu_host_is_refused_before_any_work(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    job = tiny_pretrain_job(tmp_path, backend={"type": "native", "compile": True}, train={"precision": "fp8"})
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)))
    assert done.returncode == 1
    assert ("error train.precision: fp8 needs an NVIDIA GPU with FP8 tensor cores (compute capability 8.9+: L4, "
            "L40S, RTX 40xx, H100, H200, B200); this host has none (CPU); use precision bf16 or auto") in done.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.slow  # ~45 s on 2 shared CPU cores: float8 matmuls are emulated slowly on CPU
def test_the_engine_trains_saves_and_exports_with_float8_layers(tmp_path, monkeypatch):
    """The engine's fp8 path end to end on CPU, where torch runs float8 matmuls (slowly) but the engine refuses
    fp8: with the device check bypassed, setup converts the layers before the optimizer is built, the start
    row lists the choice, the loss is finite, and checkpoints and final/ are written from Float8Linear modules
    with nn.Linear's names (final/ loads into a plain model)."""
    pytest.importorskip("torchao")
    import math

    from tests.conftest import rows
    from trainhub.engine import fp8
    from trainhub.engine.train import train
    from trainhub.job import Job
    from trainhub.metrics import MetricLog

    monkeypatch.setattr(fp8, "check_device", lambda spec, device, compiled: None)
    job = Job.model_validate(tiny_pretrain_job(tmp_path, train={
        "max_steps": 4, "precision": {"type": "fp8", "filter": "all", "allow_eager": True}}))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    log = MetricLog(run_dir / "metrics.jsonl")
    assert train(job, run_dir, log, "r1") == "completed"
    log.close()
    start = rows(run_dir, "start")[0]
    assert start["precision"] == "fp8 tensorwise Linear layers (torchao) + bf16 autocast"
    assert "fp8 tensorwise (torchao float8): 14 of 15 Linear layers in fp8, the rest bf16" in start["notes"]
    assert all(math.isfinite(r["loss"]) for r in rows(run_dir, "train"))
    from trainhub.engine.models.own import load_hf

    plain = load_hf(run_dir / "final")
    assert type(plain.model.layers[0].mlp.up_proj) is torch.nn.Linear
