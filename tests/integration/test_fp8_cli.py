"""train.precision fp8 on a host without an FP8 GPU: refused by the hub before the engine starts, with the
key, the GPU capability needed and what to use instead."""

from __future__ import annotations

import pytest

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
