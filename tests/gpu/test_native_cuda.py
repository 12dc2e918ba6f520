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


def test_deferred_log_copies_wait_for_their_own_step_only():
    """hf/deferred.py to_host: the copies hold the values as they were when queued, and waiting on
    their event does not wait for the work queued after them (a ~100 ms matmul chain here)."""
    import time

    from trainhub.hf.deferred import to_host

    a = torch.randn(4096, 4096, device="cuda")
    loss = torch.full((), 2.5, device="cuda")
    torch.cuda.synchronize()
    (host, same, none), ready = to_host(loss, 1.25, None)
    loss.fill_(7.0)  # queued after the copy: must not reach it
    for _ in range(200):
        a = a @ a / 64
    queued = time.perf_counter()
    ready.synchronize()
    waited = time.perf_counter() - queued
    torch.cuda.synchronize()
    behind = time.perf_counter() - queued
    assert not host.is_cuda and host.is_pinned() and same == 1.25 and none is None
    assert float(host) == 2.5
    assert waited < behind / 2, (waited, behind)


def test_skip_guard_reads_its_flag_without_waiting_for_later_work():
    """hf/nonfinite.py under fused AdamW on the GPU: a NaN step leaves the weights alone, its flag is
    copied to pinned memory behind itself, and read() does not wait for the work queued after it."""
    import time
    from types import SimpleNamespace

    from trainhub.hf.nonfinite import SkipNonFinite

    param = torch.nn.Parameter(torch.ones(1024, device="cuda"))
    opt = torch.optim.AdamW([param], lr=0.1, fused=True)
    trainer = SimpleNamespace(state=SimpleNamespace(global_step=0),
                              training_step=lambda value: torch.full((), value, device="cuda"))
    guard = SkipNonFinite(trainer, opt)
    trainer.training_step(float("nan"))
    param.grad = torch.full_like(param, float("nan"))
    opt.step()
    a = torch.randn(4096, 4096, device="cuda")
    torch.cuda.synchronize()
    trainer.state.global_step = 1
    trainer.training_step(1.0)
    param.grad = torch.ones_like(param)
    opt.step()  # step 2: good, queued behind a ~100 ms matmul chain
    for _ in range(200):
        a = a @ a / 64
    queued = time.perf_counter()
    assert guard.read(1) == 1 and guard.in_a_row == 1
    waited = time.perf_counter() - queued
    torch.cuda.synchronize()
    behind = time.perf_counter() - queued
    assert waited < behind / 2, (waited, behind)
    assert guard.read(2) == 0 and guard.in_a_row == 0
    assert float(opt.state[param]["step"]) == 1  # only the good step counted
