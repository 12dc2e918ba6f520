"""Checkpointing, offload and QLoRA on a CUDA GPU: what CPU tests cannot reach. Skipped without CUDA.

- full, selective and full + offload (pinned host memory) give the gradients of no checkpointing (fp32, flash
  / efficient SDPA kernels, the varlen path's ops saved by name), and the peak memory falls in the order
  none > selective > full > full + offload;
- QLoRA on CUDA: the NF4 weights stay 4-bit on the device, a bf16 step trains the adapters, and the base
  weights take about a quarter of their bf16 bytes.
"""

from __future__ import annotations

import pytest
import torch

from trainhub.engine.loss import cross_entropy
from trainhub.engine.models.args import ModelArgs
from trainhub.engine.models.transformer import CausalLM, init_weights

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _model(mode="none", offload=False, dtype=torch.float32):
    args = ModelArgs(model_type="llama", vocab_size=512, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
                     num_attention_heads=8, num_key_value_heads=2, head_dim=32, max_position_embeddings=2048)
    with torch.device("meta"):
        model = CausalLM(args)
    model.to_empty(device="cuda")
    model.tie_weights()
    model.reset_buffers()
    init_weights(model, 0)
    model.grad_checkpointing, model.activation_offload = mode, offload
    return model.to(dtype).train()


def _step(model, ids):
    loss = cross_entropy(model(ids), model.head_weight, ids, ids.numel())
    loss.backward()
    return loss.detach(), [p.grad for p in model.parameters()]


@pytest.mark.parametrize("mode,offload", [("full", False), ("selective", False), ("full", True), ("selective", True)])
def test_gradients_equal_no_checkpointing_on_cuda(mode, offload):
    ids = torch.randint(0, 512, (2, 512), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    ref = _step(_model(), ids)
    got = _step(_model(mode, offload), ids)
    torch.testing.assert_close(got[0], ref[0], atol=1e-5, rtol=1e-5)
    for a, b in zip(got[1], ref[1], strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_peak_memory_order_on_cuda():
    ids = torch.randint(0, 512, (4, 2048), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    peaks = {}
    for mode, offload in (("none", False), ("selective", False), ("full", False), ("full", True)):
        model = _model(mode, offload, torch.bfloat16)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        _step(model, ids)
        torch.cuda.synchronize()
        peaks[(mode, offload)] = torch.cuda.max_memory_allocated() - base
        del model
    order = [peaks[k] for k in (("none", False), ("selective", False), ("full", False), ("full", True))]
    assert order == sorted(order, reverse=True) and order[0] > order[1], peaks


def test_qlora_on_cuda_keeps_nf4_and_trains():
    pytest.importorskip("torchao")
    from trainhub.engine.models.own import add_lora
    from trainhub.engine.models.quant import is_nf4, quantize_nf4
    from trainhub.job import LoraAdapter

    model = _model(dtype=torch.bfloat16).cpu()
    dense = sum(m.weight.numel() * 2 for n, m in model.named_modules()
                if isinstance(m, torch.nn.Linear) and "layers" in n)
    quantize_nf4(model)
    model = add_lora(model, LoraAdapter(rank=8, alpha=16)).cuda()
    nf4 = [p for p in model.parameters() if is_nf4(p)]
    assert nf4 and all(p.device.type == "cuda" for p in nf4)
    stored = sum(t.numel() * t.element_size() for p in nf4 for t in (p.quantized_data, p.quantized_scalers))
    assert stored < 0.3 * dense, (stored, dense)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = torch.randint(0, 512, (4, 256), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    losses = []
    for _ in range(6):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = cross_entropy(model(ids), model.get_base_model().head_weight, ids, ids.numel())
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("memory", [{"grad_checkpointing": "selective"},
                                    {"grad_checkpointing": "full", "activation_offload": True}])
def test_train_compiled_with_checkpointing_matches_without(tmp_path, memory):
    """`train` on the GPU, blocks compiled: the per-step losses with checkpointing (+ offload) equal those without."""
    from tests.conftest import run_cli, tiny_pretrain_job, train_losses, write_job

    losses = []
    for name, extra in (("plain", {}), ("memory", memory)):
        (tmp_path / name).mkdir()
        job = tiny_pretrain_job(tmp_path / name, backend={"type": "native", "compile": True})
        job["train"].update(precision="bf16", **extra)
        done = run_cli("train", "--config", str(write_job(tmp_path / name / "job.yaml", job)))
        assert done.returncode == 0, done.stdout + done.stderr
        losses.append(train_losses(tmp_path / name / "run"))
    assert losses[1] == pytest.approx(losses[0], abs=2e-2)  # bf16: recomputation may round differently
