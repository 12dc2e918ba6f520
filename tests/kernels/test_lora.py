"""LoRA's fused linear (engine/kernels/lora.py) vs peft's vanilla forward: outputs and gradients of x, A, B
(and bias, W when they train), fp32 and bf16, odd shapes; then a peft-wrapped own model with fused layers
equals the same model through peft's forward. Plain torch ops (cuBLAS / CPU BLAS): no interpreter needed."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.kernels.conftest import DEVICE, TOL, rand, twin
from trainhub.engine.kernels.lora import lora_linear, reference

GRAD_BF16 = dict(atol=3e-2, rtol=3e-2)
"""bf16: the kernel adds the low-rank product inside the GEMM before one rounding, peft rounds three times; and
d A, d B sum over every token (37 x 3 here) in bf16 products."""


@pytest.mark.parametrize("shape,out,rank,bias,train_w", [((37, 129), 71, 4, False, False),
                                                        ((3, 11, 48), 100, 16, True, False),
                                                        ((5, 33), 17, 1, True, True),
                                                        ((7, 60), 96, 4, False, True),
                                                        ((2, 9, 36), 36, 4, True, False),
                                                        ((6, 64), 28, 4, False, False)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_peft_math(shape, out, rank, bias, train_w, dtype):
    x = rand(*shape, dtype=dtype)
    w = (0.2 * rand(out, shape[-1], dtype=dtype, seed=1)).detach().requires_grad_(train_w)
    b0 = rand(out, dtype=dtype, seed=2) if bias else None
    a = (0.2 * rand(rank, shape[-1], dtype=dtype, seed=3)).detach().requires_grad_()
    b = (0.2 * rand(out, rank, dtype=dtype, seed=4)).detach().requires_grad_()
    leaves = [t for t in (x, w, b0, a, b) if t is not None and t.requires_grad]
    twins = [twin(t) for t in leaves]
    args2 = [twins.pop(0) if t is not None and t.requires_grad else t for t in (x, w, b0, a, b)]
    want = reference(x, w, b0, a, b, 2.0)
    got = lora_linear(*args2, 2.0)
    torch.testing.assert_close(got, want, **TOL[dtype])
    dy = rand(*want.shape, dtype=dtype, seed=5).detach()
    want.backward(dy)
    got.backward(dy)
    for i, (t, t2) in enumerate(zip((x, w, b0, a, b), args2, strict=True)):
        if t is not None and t.requires_grad:
            assert t2.grad.dtype == t.dtype
            torch.testing.assert_close(t2.grad, t.grad, **(TOL[dtype] if dtype == torch.float32 else GRAD_BF16),
                                       msg=f"input {i}")
    if not train_w:
        assert w.grad is None


def test_the_stacked_forward_is_taken_where_the_output_is_at_least_as_wide():
    """Both forwards run in the cases above: (48 -> 100, r 16), (60 -> 96, r 4), (36 -> 36, r 4) stacked,
    the others not; the backward's d x asks the same with in and out swapped, so both of its paths run too
    ((64 -> 28, r 4) and (36 -> 36, r 4) stacked). Llama-3.2-1B's forward: q/o/gate/up stacked, k/v
    (2048 -> 512) and down (8192 -> 2048) not; its backward: q/o, k/v and down stacked."""
    from trainhub.engine.kernels.lora import stacked

    assert [stacked(i, o, r) for i, o, r in [(48, 100, 16), (60, 96, 4), (36, 36, 4), (129, 71, 4), (48, 100, 3)]] \
        == [True, True, True, False, False]  # the last: K = 51 breaks 16-byte rows
    assert [stacked(i, o, 16) for i, o in [(2048, 2048), (2048, 512), (2048, 8192), (8192, 2048)]] \
        == [True, False, True, False]
    assert [stacked(o, i, r) for i, o, r in [(64, 28, 4), (36, 36, 4), (48, 100, 16), (129, 71, 4)]] \
        == [True, True, False, False]  # the last: K = 75 breaks 16-byte rows


@pytest.mark.parametrize("shape,out,rank,bias,train_w", [((3, 7, 48), 20, 4, False, False),
                                                        ((9, 36), 40, 4, True, True)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_swiglu_fed_layer_matches_swiglu_then_peft_and_keeps_no_product(shape, out, rank, bias, train_w, dtype):
    """down(silu(gate) * up) through SwigluLoraFunction against SwiGLU then peft's LoRA math: outputs and the
    gradients of gate, up, A, B (bias, W when they train); both of its stacked choices run (the first case:
    d x stacked, the second: the forward). What it saves: gate and up, not their product."""
    from trainhub.engine.kernels.lora import swiglu_lora_linear
    from trainhub.engine.kernels.reference import swiglu

    gate, up = rand(*shape, dtype=dtype), rand(*shape, dtype=dtype, seed=6)
    w = (0.2 * rand(out, shape[-1], dtype=dtype, seed=1)).detach().requires_grad_(train_w)
    b0 = rand(out, dtype=dtype, seed=2) if bias else None
    a = (0.2 * rand(rank, shape[-1], dtype=dtype, seed=3)).detach().requires_grad_()
    b = (0.2 * rand(out, rank, dtype=dtype, seed=4)).detach().requires_grad_()
    leaves = [t for t in (gate, up, w, b0, a, b) if t is not None and t.requires_grad]
    twins = {id(t): twin(t) for t in leaves}
    g2, u2, w2, b02, a2, bb2 = (twins.get(id(t), t) if t is not None else None for t in (gate, up, w, b0, a, b))
    want = reference(swiglu(gate, up), w, b0, a, b, 2.0)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        got = swiglu_lora_linear(g2, u2, w2, b02, a2, bb2, 2.0)
    torch.testing.assert_close(got, want, **TOL[dtype])
    tokens = gate.numel() // shape[-1]
    assert len([t for t in saved if tuple(t.shape) == (tokens, shape[-1])]) == 2  # gate and up; no product
    dy = rand(*want.shape, dtype=dtype, seed=5).detach()
    want.backward(dy)
    got.backward(dy)
    for t in leaves:  # bf16: d A sums products of the product h over tokens, rounded in other places than
        # autograd's; the tolerance is relative to each gradient's largest entry, as the model tests take it
        tol = TOL[dtype] if dtype == torch.float32 else dict(rtol=GRAD_BF16["rtol"],
                                                             atol=GRAD_BF16["atol"] * t.grad.abs().max().item())
        torch.testing.assert_close(twins[id(t)].grad, t.grad, **tol)
    if not train_w:
        assert w.grad is None and w2.grad is None


MODEL_TOL = {"fp32": dict(atol=1e-5, rtol=1e-4), "bf16-compiled": dict(atol=3e-2, rtol=3e-2)}


def _nonzero_b(model):
    """B starts at zero: a wrong low-rank path would not show."""
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.2)
    return model


def _assert_fused_equals_peft(plain, fused, ids, mode, saved: list | None = None):
    """One forward and backward of each (`fused` compiled under bf16-compiled): equal losses, and equal gradients
    on the adapters, the only weights that train. `saved` collects what the fused model's forward saves."""
    import contextlib

    tol = MODEL_TOL[mode]
    if mode != "fp32":
        fused.get_base_model().compile()
    losses = []
    for model in (plain, fused):
        hooks = (torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t)
                 if model is fused and saved is not None else contextlib.nullcontext())
        with hooks, torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=mode != "fp32"):
            loss = (model(input_ids=ids).float() ** 2).mean()
        loss.backward()
        losses.append(loss)
    torch.testing.assert_close(losses[1], losses[0], **tol)
    grads = dict(plain.named_parameters())
    trained = [(n, p) for n, p in fused.named_parameters() if p.requires_grad]
    assert trained and all("lora_" in n for n, _ in trained)
    for n, p in trained:
        scale = 1.0 if mode == "fp32" else grads[n].grad.abs().max().item()
        torch.testing.assert_close(p.grad, grads[n].grad, atol=tol["atol"] * scale, rtol=tol["rtol"], msg=n)


@pytest.mark.parametrize("mode", ["fp32", pytest.param("bf16-compiled", marks=[
    pytest.mark.gpu, pytest.mark.skipif(DEVICE != "cuda", reason="bf16 autocast + torch.compile: CUDA only")])])
def test_fused_peft_model_equals_peft(mode):
    pytest.importorskip("peft")
    from tests.kernels.test_model import ARGS
    from trainhub.engine.models.own import add_lora, fuse_lora
    from trainhub.engine.models.transformer import CausalLM
    from trainhub.job import LoraAdapter

    torch.manual_seed(0)
    base = CausalLM(ARGS["llama"])
    plain = _nonzero_b(add_lora(base, LoraAdapter(type="lora", rank=4, alpha=8, dropout=0.0,
                                                  targets="all-linear")).to(DEVICE))
    fused = copy.deepcopy(plain)
    assert fuse_lora(fused) == 2 * 7
    _assert_fused_equals_peft(plain, fused, torch.randint(3, 301, (2, 9), device=DEVICE), mode)


def test_dropout_keeps_peft_forward():
    pytest.importorskip("peft")
    from tests.kernels.test_model import ARGS
    from trainhub.engine.models.own import add_lora, fuse_lora
    from trainhub.engine.models.transformer import CausalLM
    from trainhub.job import LoraAdapter

    model = add_lora(CausalLM(ARGS["llama"]), LoraAdapter(type="lora", rank=4, alpha=8, dropout=0.1,
                                                          targets=["q_proj"]))
    assert fuse_lora(model) == 0


def test_fused_layers_train_and_the_sampler_runs_peft(monkeypatch):
    """The fused Function is the training path; in eval mode (evaluation, the GRPO sampler's rollouts, which run
    reference ops) each layer runs peft's forward, and the rollout equals that of an unfused twin."""
    pytest.importorskip("peft")
    import trainhub.engine.kernels.lora as lora_module
    from tests.kernels.test_model import ARGS
    from trainhub.engine.device import Precision
    from trainhub.engine.models.own import add_lora, fuse_lora
    from trainhub.engine.models.transformer import CausalLM
    from trainhub.engine.rl.rollout import Sampler, SamplingSpec
    from trainhub.job import LoraAdapter

    torch.manual_seed(0)
    plain = _nonzero_b(add_lora(CausalLM(ARGS["llama"]), LoraAdapter(type="lora", rank=4, alpha=8, dropout=0.0,
                                                                     targets="all-linear")))
    fused = copy.deepcopy(plain)
    assert fuse_lora(fused) == 2 * 7
    calls = []
    for name in ("lora_linear", "swiglu_lora_linear"):  # down_proj takes the MLP's SwiGLU halves (the latter)
        real = getattr(lora_module, name)
        monkeypatch.setattr(lora_module, name, lambda *a, real=real, name=name: calls.append(name) or real(*a))

    def rollout(model):
        s = Sampler(model, SamplingSpec(max_new_tokens=5, temperature=1.0, top_p=1.0), eos_ids=[2], pad_id=0,
                    device=torch.device("cpu"), precision=Precision("fp32", None, False))
        return s.sample([[5, 6, 7], [9, 10]], generator=torch.Generator().manual_seed(0))

    fused.train()
    got, want = rollout(fused), rollout(plain)
    assert calls == [] and fused.training  # peft's forward while sampling; training mode given back
    assert torch.equal(got.completion_ids, want.completion_ids)
    torch.testing.assert_close(got.logprobs, want.logprobs)
    fused(input_ids=torch.tensor([[5, 6, 7]])).float().sum().backward()
    assert sorted(calls) == ["lora_linear"] * 12 + ["swiglu_lora_linear"] * 2  # the update: every layer fused


@pytest.mark.parametrize("mode", ["fp32", pytest.param("bf16-compiled", marks=[
    pytest.mark.gpu, pytest.mark.skipif(DEVICE != "cuda", reason="bf16 autocast + torch.compile: CUDA only")])])
def test_fused_qlora_equals_peft_and_keeps_the_weight_4bit(mode):
    """QLoRA's NF4 base through the fused Function: the same outputs and adapter gradients as peft's QLoRA
    forward, and what the forward saves for the backward holds each frozen weight in its 4-bit form only (the
    Function dequantizes it again in the backward)."""
    from trainhub.engine.models.own import fuse_lora

    plain, fused = _qlora_model(), _qlora_model()
    assert fuse_lora(fused) == 2 * 7
    ids = torch.randint(3, 97, (2, 9), device=DEVICE)  # 18 tokens: no activation has a weight's shape
    saved = []
    _assert_fused_equals_peft(plain, fused, ids, mode, saved)
    _assert_4bit_only(fused, saved)


def _qlora_model(rank: int = 4):
    """A tiny own-model QLoRA (NF4 base, LoRA on every linear, B nonzero); the same each call (NF4 tensors
    do not deepcopy with their block sizes, so twins are built twice)."""
    pytest.importorskip("peft")
    pytest.importorskip("torchao")
    from tests.unit.test_models import ours_like
    from tests.unit.test_qlora import _hf  # shapes in multiples of the NF4 block
    from trainhub.engine.models.own import add_lora
    from trainhub.engine.models.quant import quantize_nf4
    from trainhub.job import LoraAdapter

    base = ours_like(_hf()).to(DEVICE).train()
    quantize_nf4(base)
    torch.manual_seed(0)
    return _nonzero_b(add_lora(base, LoraAdapter(type="lora", rank=rank, alpha=2 * rank, dropout=0.0,
                                                 targets="all-linear")))


def _assert_4bit_only(model, saved: list):
    """Every fused layer keeps its weight's 4-bit data for the backward, and no tensor of a weight's shape."""
    dense_shapes = {tuple(m.base_layer.weight.shape) for m in model.modules() if hasattr(m, "base_layer")}
    assert len([t for t in saved if t.dtype == torch.uint8]) == 2 * 7  # NF4's packed codes, one per layer ...
    assert not [tuple(t.shape) for t in saved if tuple(t.shape) in dense_shapes]  # ... and no dequantized copy


def test_compiled_qlora_keeps_the_weight_4bit():
    """The same under torch.compile per block, as the engine compiles (CPU, fp32), at rank 8, where q/o/gate/up
    take the stacked forward and q/o/k/v/down the stacked d x (hidden 64 + 8): equal to peft's QLoRA uncompiled,
    and only 4-bit weights saved. Until 2026-12-08 the traced Function saved every dequantized weight for the
    backward (1.9 GB at the 1B shape: QLoRA's measured peak sat 0.5 GB above LoRA's); kernels/lora.py's nf4_meta
    says why and how."""
    from trainhub.engine.models.own import compile_blocks, fuse_lora

    plain, model = _qlora_model(rank=8), _qlora_model(rank=8)
    fuse_lora(model)
    compile_blocks(model)
    saved = []
    _assert_fused_equals_peft(plain, model, torch.randint(3, 97, (2, 9), device=DEVICE), "fp32", saved)
    _assert_4bit_only(model, saved)
