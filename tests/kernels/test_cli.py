"""End to end through the real CLI: a tiny pretrain run with backend.kernels triton (Triton's interpreter on
CPU, the real kernels on CUDA) logs the same per-step losses as kernels none, and its start row says which
kernels ran. Read from metrics.jsonl, not stdout."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import rows, run_cli, tiny_pretrain_job, train_losses, write_job

INTERPRET = {} if torch.cuda.is_available() else {"TRITON_INTERPRET": "1"}


@pytest.mark.slow
def test_kernels_train_as_eager(tmp_path):
    for kernels in ("none", "triton"):
        d = tmp_path / kernels
        d.mkdir()
        job = tiny_pretrain_job(d, backend={"type": "native", "kernels": kernels},
                                train={"max_steps": 3, "micro_batch_size": 4})
        job.pop("model")  # tiny_pretrain_job's model, smaller: the interpreter runs each Triton program in numpy
        job["model"] = {"init": {"family": "llama", "hidden_size": 32, "intermediate_size": 48, "num_layers": 1,
                                 "num_heads": 4, "num_kv_heads": 2, "max_position_embeddings": 64,
                                 "tokenizer": {"type": "train", "vocab_size": 300}}}
        done = run_cli("train", "--config", str(write_job(d / "job.yaml", job)), env=INTERPRET)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    notes = rows(tmp_path / "triton" / "run", "start")[0]["notes"]
    assert any(n.startswith("kernels: triton") for n in notes), notes
    losses = train_losses(tmp_path / "triton" / "run")
    assert len(losses) == 3 and losses == pytest.approx(train_losses(tmp_path / "none" / "run"), abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("adapter", ["full", "lora"])
def test_grpo_update_runs_the_kernels_as_eager(tmp_path, adapter):
    """Native GRPO with backend.kernels triton: the update's forward and backward through the kernels (and with
    LoRA, peft's layers through the fused LoRA Function), the sampler through the reference ops and peft's
    forward (the same rollouts, seeded), so the per-step losses and rewards equal kernels none's within float32
    noise, and the start row names both."""
    from tests.integration.test_native_grpo import _tiny

    for kernels in ("none", "triton"):
        d = tmp_path / kernels
        d.mkdir()
        job = _tiny(d, "run", {"algorithm": "grpo", "kl_beta": 0.1})
        job["backend"] = {"type": "native", "kernels": kernels}
        if adapter == "lora":
            job["adapter"] = {"type": "lora", "rank": 4, "alpha": 8}
        done = run_cli("train", "--config", str(write_job(d / "job.yaml", job)), env=INTERPRET)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    notes = rows(tmp_path / "triton" / "run", "start")[0]["notes"]
    assert any(n.startswith("kernels: triton") and "sampler runs the reference ops" in n for n in notes), notes
    fused = [int(n.split()[1]) for n in notes if n.endswith("LoRA layers fused (engine/kernels/lora.py)")]
    assert fused == ([7 * 2] if adapter == "lora" else []), notes  # every linear of the tiny model's 2 blocks
    assert any("remakes the SwiGLU product" in n for n in notes), notes
    got, want = (rows(tmp_path / k / "run", "train") for k in ("triton", "none"))
    assert [r["method"]["reward_mean"] for r in got] == [r["method"]["reward_mean"] for r in want]
    assert [r["loss"] for r in got] == pytest.approx([r["loss"] for r in want], abs=1e-5)
