"""train.precision fp8 on a CUDA GPU with FP8 tensor cores (compute capability 8.9+): float8 layers against
bf16 within FP8 tolerance (compiled, as the engine runs them), and native runs, full and LoRA, through the hub.
Skipped without such a GPU or without torchao. The 0.5% quality bar is measured by research/gpu_fp8.sh on a
~125M model; the tiny runs here check that fp8 trains and stays near bf16, not that bar."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import rows, run_cli, tiny_pretrain_job, train_losses, write_job

pytest.importorskip("torchao")
FP8_GPU = torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 9)
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not FP8_GPU, reason="needs a GPU of compute capability 8.9+")]

from tests.unit.test_fp8 import BARS, rel  # noqa: E402
from trainhub.engine.fp8 import convert_to_fp8  # noqa: E402
from trainhub.job import Fp8Precision  # noqa: E402
from trainhub.metrics import read_rows  # noqa: E402
from trainhub.metrics.drift import loss_drift  # noqa: E402


@pytest.mark.parametrize("recipe", sorted(BARS))
def test_fp8_layer_on_cuda_matches_bf16(recipe):
    """A compiled float8 Linear (float32 master weight, bf16 autocast, the engine's setting) against the bf16
    one: output, d input, d weight within the recipe's bars (tests/unit/test_fp8.py BARS), K = 4096."""
    torch.manual_seed(0)
    ref = torch.nn.Linear(4096, 2048, bias=False, device="cuda")
    model = torch.nn.Sequential(torch.nn.Linear(4096, 2048, bias=False, device="cuda"))
    model[0].load_state_dict(ref.state_dict())
    convert_to_fp8(model, Fp8Precision(recipe=recipe, filter="all"))
    compiled = torch.compile(model)
    x = torch.randn(8192, 4096, device="cuda", dtype=torch.bfloat16)
    grad = torch.randn(8192, 2048, device="cuda", dtype=torch.bfloat16)
    x_ref, x_fp8 = x.clone().requires_grad_(), x.clone().requires_grad_()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y_ref, y_fp8 = ref(x_ref), compiled(x_fp8)
    y_ref.backward(grad)
    y_fp8.backward(grad)
    got = (rel(y_fp8, y_ref), rel(x_fp8.grad, x_ref.grad), rel(model[0].weight.grad, ref.weight.grad))
    for what, err, bar in zip(("out", "d input", "d weight"), got, BARS[recipe], strict=True):
        assert err < (bar or 0.01), (what, err)  # gw_hp's d weight: bf16, not bitwise (fp32 weight here)


def run(tmp_path, name, precision, **over):
    job = tiny_pretrain_job(tmp_path, output_dir=str(tmp_path / name), backend={"type": "native", "compile": True},
                            train={"precision": precision, "max_steps": 40, "micro_batch_size": 16})
    job.update(over)
    done = run_cli("train", "--config", str(write_job(tmp_path / f"{name}.yaml", job)))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp_path / name


@pytest.mark.parametrize("recipe", ["tensorwise", "rowwise"])
def test_native_fp8_run_trains_near_bf16(tmp_path, recipe):
    bf16 = run(tmp_path, "bf16", "bf16")
    fp8 = run(tmp_path, "fp8", {"type": "fp8", "recipe": recipe, "filter": "all"})
    start = rows(fp8, "start")[0]
    assert start["precision"] == f"fp8 {recipe} Linear layers (torchao) + bf16 autocast"
    # 2 blocks x 7 projections, all multiples of 16 (hidden 32, kv 16, mlp 64); the head stays bf16
    assert f"fp8 {recipe} (torchao float8): 14 of 15 Linear layers in fp8, the rest bf16" in start["notes"]
    losses = train_losses(fp8)
    assert all(math.isfinite(x) for x in losses) and losses[-1] < losses[0] - 0.5
    drift = loss_drift(read_rows(bf16 / "metrics.jsonl"), read_rows(fp8 / "metrics.jsonl"), window=10)
    assert abs(drift.final_rel) < 0.05, drift.line()


def test_lora_with_fp8_on_gpu(tmp_path, pretrained):
    job = tiny_pretrain_job(tmp_path, backend={"type": "native", "compile": True})
    job.update({"name": "gpu-fp8-lora", "model": {"path": str(pretrained)}, "method": {"type": "sft"},
                "adapter": {"type": "lora", "rank": 16, "alpha": 32},
                "data": {"train": "config/data/chat_eval.jsonl", "format": "messages", "max_length": 64}})
    job["train"].update({"precision": {"type": "fp8", "filter": "all"}, "max_steps": 5})
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert all(math.isfinite(x) for x in train_losses(tmp_path / "run"))
    assert (tmp_path / "run" / "adapter" / "adapter_config.json").is_file()


def test_fp8_under_fsdp2_gathers_float8_weights(tmp_path):
    """FSDP2 in one process with fp8 tensorwise: the weights are all-gathered in float8 (the start row says
    so), the scales precomputed after each step, and the run trains as the unsharded fp8 run does."""
    plain = run(tmp_path, "fp8", {"type": "fp8", "recipe": "tensorwise", "filter": "all"})
    sharded = run(tmp_path, "fp8-fsdp2", {"type": "fp8", "recipe": "tensorwise", "filter": "all"},
                  distributed={"strategy": "fsdp2", "nproc_per_node": 1})
    assert "fp8: FSDP2 all-gathers the float8 layers' weights in float8 (tensorwise)" in rows(sharded, "start")[0]["notes"]
    drift = loss_drift(read_rows(plain / "metrics.jsonl"), read_rows(sharded / "metrics.jsonl"), window=10)
    assert abs(drift.final_rel) < 0.02, drift.line()
