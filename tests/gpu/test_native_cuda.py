"""The native engine on a CUDA GPU: bf16 autocast, MFU reported, torch.compile. Skipped without CUDA."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import rows, run_cli, tiny_pretrain_job, train_losses, write_job

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("compile_", [False, True])
def test_pretrain_on_gpu_bf16(tmp_path, compile_):
    job = tiny_pretrain_job(tmp_path, backend={"type": "native", "compile": compile_},
                            train={"precision": "auto", "max_steps": 20})
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)))
    assert done.returncode == 0, done.stdout + done.stderr
    start = rows(tmp_path / "run", "start")[0]
    assert start["hardware"]["device"] == "cuda"
    assert start["precision"] == "bf16 autocast"
    train = rows(tmp_path / "run", "train")
    losses = train_losses(tmp_path / "run")
    assert all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] - 0.5
    assert all(r["mem_gb"] > 0 for r in train)
    if start["hardware"]["peak_flops"]:
        assert all(r["mfu"] is not None and 0 < r["mfu"] < 1 for r in train)


def test_lora_sft_on_gpu(tmp_path, pretrained):
    job = tiny_pretrain_job(tmp_path)
    job.update({"name": "gpu-sft", "model": {"path": str(pretrained)}, "method": {"type": "sft"},
                "adapter": {"type": "lora", "rank": 4, "alpha": 8},
                "data": {"train": "config/data/chat_eval.jsonl", "format": "messages", "max_length": 64}})
    job["train"].update({"precision": "bf16", "max_steps": 5})
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(math.isfinite(x) for x in train_losses(tmp_path / "run"))
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()


def test_resume_on_gpu_matches_uninterrupted(tmp_path):
    """On a GPU the resumed run's per-step losses match an uninterrupted run's within 1e-6 relative."""
    import pytest as _pytest

    from tests.integration.test_resume import _interrupt_after, _losses_by_step

    steps = 40
    straight = tiny_pretrain_job(tmp_path, output_dir=str(tmp_path / "straight"),
                                 train={"max_steps": steps, "precision": "bf16"})
    assert run_cli("train", "--config", str(write_job(tmp_path / "s.yaml", straight))).returncode == 0
    config = write_job(tmp_path / "r.yaml", dict(straight, output_dir=str(tmp_path / "resumed")))
    first = _interrupt_after(config, tmp_path / "resumed", min_step=3)
    assert first.returncode == 130, first.stdout
    second = run_cli("train", "--config", str(config), "--resume")
    assert second.returncode == 0, second.stdout + second.stderr
    expected, got = _losses_by_step(tmp_path / "straight"), _losses_by_step(tmp_path / "resumed")
    assert sorted(got) == list(range(1, steps + 1))
    assert [got[s] for s in sorted(got)] == _pytest.approx([expected[s] for s in sorted(got)], rel=1e-6)
