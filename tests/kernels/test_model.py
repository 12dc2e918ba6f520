"""The own model with every kernel on equals the eager path: hidden states, loss and every weight's gradient.

Tiny odd-sized Llama (GQA, untied, biases) and Qwen3 (per-head q/k norm: RMSNorm over head_dim) in fp32;
on CPU the kernels run under Triton's interpreter, on CUDA for real (then also bf16 autocast, compiled).
Plus the job side: backend.kernels resolves per device and refuses what cannot run, by name.
"""

from __future__ import annotations

import copy

import pytest
import torch

from tests.kernels.conftest import DEVICE
from trainhub.engine.kernels import EAGER, kernel_ops, resolve, use_kernels
from trainhub.engine.loss import cross_entropy
from trainhub.engine.models.args import ModelArgs
from trainhub.engine.models.transformer import CausalLM

ARGS = {
    "llama": ModelArgs(model_type="llama", vocab_size=301, hidden_size=48, intermediate_size=71, num_hidden_layers=2,
                       num_attention_heads=6, num_key_value_heads=2, head_dim=8, qkv_bias=True, o_bias=False,
                       mlp_bias=True, qk_norm=False, rms_norm_eps=1e-5, rope_theta=10000.0, rope_llama3=None,
                       tie_word_embeddings=False, max_position_embeddings=64, initializer_range=0.2,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2),
}
ARGS["qwen3"] = ModelArgs(**{**ARGS["llama"].__dict__, "model_type": "qwen3", "qk_norm": True, "head_dim": 14,
                             "qkv_bias": False, "mlp_bias": False, "tie_word_embeddings": True})


def pair(name):
    torch.manual_seed(0)
    eager = CausalLM(ARGS[name])
    with torch.no_grad():
        for p in eager.parameters():
            p.add_(torch.randn_like(p) * 0.2)  # norms away from 1, weights large enough that a wrong op shows
    eager = eager.to(DEVICE)
    fused = copy.deepcopy(eager)
    fused.tie_weights()
    use_kernels(fused, kernel_ops("triton"))
    return eager, fused


def run(model, ids, labels, impl, autocast=False):
    with torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=autocast):
        hidden = model(ids)
        loss = cross_entropy(hidden, model.head_weight, labels, int((labels[:, 1:] != -100).sum()), impl=impl)
    loss.backward()
    return hidden.float(), loss


@pytest.mark.parametrize("name", ARGS)
def test_kernels_equal_eager_fp32(name):
    eager, fused = pair(name)
    assert fused.model.layers[0].mlp.ops.name == "triton" and eager.model.layers[0].mlp.ops is EAGER
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 301, (2, 11), generator=gen).to(DEVICE)
    labels = ids.clone()
    labels[0, :4] = -100
    h_eager, l_eager = run(eager, ids, labels, "eager")
    h_fused, l_fused = run(fused, ids, labels, "triton")
    torch.testing.assert_close(h_fused, h_eager, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(l_fused, l_eager, atol=1e-5, rtol=1e-5)
    grads = dict(eager.named_parameters())
    for n, p in fused.named_parameters():
        torch.testing.assert_close(p.grad, grads[n].grad, atol=1e-5, rtol=1e-4, msg=n)


@pytest.mark.gpu
@pytest.mark.skipif(DEVICE != "cuda", reason="bf16 autocast and torch.compile of the kernels: CUDA only")
@pytest.mark.parametrize("compiled", [False, True])
def test_kernels_equal_eager_bf16_autocast_cuda(compiled):
    eager, fused = pair("llama")
    if compiled:
        fused.compile()
    ids = torch.randint(3, 301, (2, 37), device=DEVICE)
    _, l_eager = run(eager, ids, ids, "eager", autocast=True)
    _, l_fused = run(fused, ids, ids, "triton", autocast=True)
    torch.testing.assert_close(l_fused, l_eager, atol=2e-2, rtol=1e-2)
    grads = dict(eager.named_parameters())
    for n, p in fused.named_parameters():
        scale = grads[n].grad.abs().max().item()
        torch.testing.assert_close(p.grad, grads[n].grad, atol=5e-2 * scale, rtol=5e-2, msg=n)


def test_compiled_step_keeps_no_swiglu_product():
    """Compiled per block as the engine does (CPU, fp32), the MLP keeps gate and up for the backward but not
    silu(gate) * up: the down projection remakes it (kernels/swiglu.py SwigluLinearFunction). Only swiglu_linear
    is the Triton family's here: the other kernels are not ops of their own, and compile cannot trace Triton's
    CPU interpreter."""
    from dataclasses import replace

    from trainhub.engine.kernels.swiglu import swiglu_linear
    from trainhub.engine.models.own import compile_blocks

    torch.manual_seed(0)
    model = CausalLM(ARGS["llama"]).to(DEVICE)
    use_kernels(model, replace(EAGER, swiglu_linear=swiglu_linear))
    compile_blocks(model)
    ids = torch.randint(3, 301, (2, 11), generator=torch.Generator().manual_seed(1)).to(DEVICE)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        hidden = model(ids)
    cross_entropy(hidden, model.head_weight, ids, ids.numel(), impl="eager").backward()
    wide = [t for t in saved if tuple(t.shape) in {(22, 71), (2, 11, 71)}]  # [tokens, intermediate]
    assert len(wide) == 2 * ARGS["llama"].num_hidden_layers  # gate and up of each layer, no product
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_resolve_per_device(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    assert resolve("auto", cpu)[0] == "none" and resolve("none", cuda)[0] == "none"
    assert resolve("auto", cuda)[0] == "triton"  # triton is installed wherever these tests run
    with pytest.raises(ValueError, match="backend.kernels triton needs .* CUDA GPU"):
        resolve("triton", cpu)
    with pytest.raises(ValueError, match="unknown backend.kernels 'fast'"):
        resolve("fast", cpu)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert resolve("triton", cpu)[0] == "triton"


def test_liger_needs_cuda():
    pytest.importorskip("liger_kernel")
    with pytest.raises(ValueError, match="liger needs a CUDA GPU"):
        resolve("liger", torch.device("cpu"))
