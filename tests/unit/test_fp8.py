"""train.precision fp8 (engine/fp8.py, torchao float8): the schema, the refusals before any work, the layer
filter's decisions for known shapes, and a conversion that swaps exactly the chosen Linear layers. On CPU
torch 2.13 runs torch._scaled_mm for float8 (slowly), so forward and backward are checked here too."""

from __future__ import annotations

from importlib.util import find_spec

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from trainhub.engine.fp8 import Fp8Error, choose_layers, convert_to_fp8, slow
from trainhub.engine.models.args import ModelArgs
from trainhub.engine.models.transformer import CausalLM
from trainhub.engine.precision import fp8_refusal
from trainhub.host import Host
from trainhub.job import Fp8Precision, Job
from trainhub.runners import RUNNERS

needs_torchao = pytest.mark.skipif(find_spec("torchao") is None, reason="needs torchao (the fp8 extra)")

H100 = Host(gpus=("NVIDIA H100 80GB HBM3",), capabilities=((9, 0),))
A100 = Host(gpus=("NVIDIA A100-SXM4-80GB",), capabilities=((8, 0),))


def job(precision, backend="native", compile_=True) -> Job:
    be = {"type": backend, "compile": compile_} if backend == "native" else backend
    return Job.model_validate({
        "name": "t", "model": {"path": "some/model"}, "method": "pretrain", "backend": be,
        "data": {"train": "x.jsonl", "format": "text"}, "train": {"max_steps": 2, "precision": precision}})


def spec(**fields) -> Fp8Precision:
    return Fp8Precision(**fields)


def llama(hidden, inter, layers, heads, kv, vocab=1024) -> CausalLM:
    return CausalLM(ModelArgs(model_type="llama", vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                              num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv,
                              head_dim=hidden // heads))


# ----------------------------------------------------------------------------- schema


def test_fp8_shorthand_and_fields():
    p = job("fp8").train.precision
    assert isinstance(p, Fp8Precision)
    assert (p.recipe, p.filter, p.skip_first_layers, p.skip_last_layers, p.skip_modules, p.head, p.allow_eager) == \
        ("tensorwise", "measured", 0, 0, [], False, False)
    assert job({"type": "fp8", "recipe": "rowwise_with_gw_hp"}).train.precision.recipe == "rowwise_with_gw_hp"


@pytest.mark.parametrize("bad,words", [
    ({"type": "fp8", "recipe": "blockwise"}, "tensorwise"),
    ({"type": "fp8", "skip_first_layers": -1}, "greater than or equal to 0"),
    ({"type": "fp8", "scaling": "delayed"}, "Extra inputs are not permitted"),
    ({"type": "fp8", "head": True}, "an fp8 head is not supported yet"),
])
def test_bad_fp8_fields_are_named(bad, words):
    with pytest.raises(ValidationError, match=words):
        job(bad)


# ----------------------------------------------------------------------------- refusals


def test_the_refusal_rule():
    assert "this host has none (CPU)" in fp8_refusal(gpu=None, capability=None, compiled=True, allow_eager=False)
    a100 = fp8_refusal(gpu="NVIDIA A100-SXM4-80GB", capability=(8, 0), compiled=True, allow_eager=False)
    assert "compute capability 8.9+" in a100 and "NVIDIA A100-SXM4-80GB has 8.0" in a100
    assert "needs backend.compile: true" in fp8_refusal(gpu="H100", capability=(9, 0), compiled=False,
                                                        allow_eager=False)
    assert fp8_refusal(gpu="H100", capability=(9, 0), compiled=False, allow_eager=True) is None
    assert fp8_refusal(gpu="L4", capability=(8, 9), compiled=True, allow_eager=False) is None
    assert fp8_refusal(gpu="B200", capability=(10, 0), compiled=True, allow_eager=False) is None
    assert fp8_refusal(gpu="unknown", capability=None, compiled=True, allow_eager=False) is None  # the engine decides


def fp8_problems(host, **kw) -> list[str]:
    return [p.message for p in RUNNERS["native"].check(job(**kw), host) if p.where == "train.precision"]


@needs_torchao
def test_native_plan_refuses_where_fp8_cannot_run():
    assert fp8_problems(H100, precision="fp8") == []
    assert fp8_problems(H100, precision={"type": "fp8", "allow_eager": True}, compile_=False) == []
    [cpu] = fp8_problems(Host(), precision="fp8")
    assert "this host has none (CPU)" in cpu
    [a100] = fp8_problems(A100, precision="fp8")
    assert "NVIDIA A100-SXM4-80GB has 8.0" in a100
    [eager] = fp8_problems(H100, precision="fp8", compile_=False)
    assert "allow_eager" in eager


@pytest.mark.parametrize("backend", sorted(set(RUNNERS) - {"native"}))
def test_other_backends_refuse_fp8(backend):
    found = [p.message for p in RUNNERS[backend].check(job("fp8", backend=backend), H100)
             if p.where == "train.precision"]
    assert f"{backend} cannot train in fp8; train.precision fp8 (torchao float8 matmuls) runs on backend native " \
           f"only" in found


def test_the_engine_refuses_on_cpu_before_any_work():
    from trainhub.engine.device import pick_precision

    with pytest.raises(Fp8Error, match=r"this host has none \(CPU\)"):
        pick_precision(spec(), torch.device("cpu"), [], compiled=True)


# ----------------------------------------------------------------------------- the filter


@pytest.mark.parametrize("recipe,k,n,is_slow", [
    # Llama-3-8B: q/o 4096x4096, k/v 4096 -> 1024, gate/up 4096 -> 14336, down 14336 -> 4096
    ("tensorwise", 4096, 4096, False), ("tensorwise", 4096, 1024, True), ("tensorwise", 4096, 14336, False),
    ("tensorwise", 14336, 4096, False),
    ("rowwise", 4096, 4096, False), ("rowwise", 4096, 1024, True), ("rowwise", 14336, 4096, False),
    # Llama-3.2-1B: q/o 2048x2048, k/v 2048 -> 512, gate/up 2048 -> 8192, down 8192 -> 2048
    ("tensorwise", 2048, 2048, False), ("tensorwise", 2048, 512, True), ("tensorwise", 8192, 2048, False),
    ("rowwise", 2048, 2048, True), ("rowwise", 2048, 8192, False), ("rowwise", 8192, 2048, True),
    ("rowwise", 2048, 4096, True), ("rowwise", 1024, 8192, True),
    ("rowwise_with_gw_hp", 2048, 8192, False), ("rowwise_with_gw_hp", 2048, 2048, True),
])
def test_the_filter_for_known_shapes(recipe, k, n, is_slow):
    assert slow(recipe, k, n) is is_slow


def test_the_filter_on_an_8b_shaped_slice():
    """Decisions only read shapes: a 2-block Llama-3-8B slice on the meta device."""
    with torch.device("meta"):
        model = llama(4096, 14336, 2, 32, 8, vocab=128256)
    got = {c.name: c.kept for c in choose_layers(model, spec()).choices}
    assert got["model.layers.0.self_attn.q_proj"] is None and got["model.layers.1.mlp.down_proj"] is None
    assert got["model.layers.0.self_attn.k_proj"] == "shape does not pay under tensorwise"
    assert got["lm_head"] == "head (its matmul runs in the loss)"
    assert sum(v is None for v in got.values()) == 2 * 5  # q, o, gate, up, down per block
    first_last = choose_layers(model, spec(skip_first_layers=1, filter="all")).kept
    assert first_last["model.layers.0.mlp.up_proj"] == "skip_first_layers 1"
    assert "model.layers.1.mlp.up_proj" not in first_last and "model.layers.1.self_attn.k_proj" not in first_last
    assert choose_layers(model, spec(skip_last_layers=1)).kept["model.layers.1.mlp.up_proj"] == "skip_last_layers 1"


def test_a_misspelt_skip_or_too_many_skipped_blocks_is_an_error():
    with torch.device("meta"):
        model = llama(64, 128, 2, 4, 2)
    with pytest.raises(Fp8Error, match="skip_modules: down_prj match no Linear"):
        choose_layers(model, spec(skip_modules=["down_prj"]))
    with pytest.raises(Fp8Error, match="exceed the model's 2 blocks"):
        choose_layers(model, spec(skip_first_layers=2, skip_last_layers=1))


# ----------------------------------------------------------------------------- conversion


def float8_names(model) -> set[str]:
    from torchao.float8.float8_linear import Float8Linear

    return {name for name, m in model.named_modules() if isinstance(m, Float8Linear)}


@needs_torchao
def test_conversion_swaps_exactly_the_chosen_layers_and_keeps_the_parameters():
    torch.manual_seed(0)
    model = llama(64, 144, 3, 4, 2)  # 144: a multiple of 16; k/v 64 -> 32
    model.model.layers[2].mlp.down_proj = nn.Linear(136, 64, bias=False)  # 136 is not a multiple of 16
    params = dict(model.named_parameters())
    report = convert_to_fp8(model, spec(filter="all", skip_first_layers=1, skip_modules=["o_proj"]))
    expected = {f"model.layers.{i}.{m}" for i in (1, 2) for m in
                ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")}
    expected.add("model.layers.1.mlp.down_proj")
    assert float8_names(model) == expected == set(report.converted)
    assert report.kept["model.layers.2.mlp.down_proj"] == "dimensions not multiples of 16"
    assert report.kept["model.layers.1.self_attn.o_proj"] == "skip_modules o_proj"
    assert report.kept["model.layers.0.mlp.gate_proj"] == "skip_first_layers 1"
    assert dict(model.named_parameters()).keys() == params.keys()  # checkpoints and the optimizer see no change
    assert all(p is params[n] for n, p in model.named_parameters())
    assert report.lines()[0] == "fp8 tensorwise (torchao float8): 11 of 22 Linear layers in fp8, the rest bf16"
    assert "  mlp.down_proj K=136 N=64 x1: dimensions not multiples of 16" in report.lines()


@needs_torchao
def test_the_measured_filter_converts_nothing_on_a_tiny_model():
    model = llama(64, 128, 2, 4, 2)
    report = convert_to_fp8(model, spec())
    assert float8_names(model) == set() and report.converted == []
    assert set(report.kept.values()) == {"shape does not pay under tensorwise", "head (its matmul runs in the loss)"}
    assert report.lines()[-1].startswith("  no Linear layer converted: this run is a bf16 run")


@needs_torchao
def test_a_second_conversion_is_refused():
    model = llama(64, 128, 2, 4, 2)
    convert_to_fp8(model, spec(filter="all"))
    with pytest.raises(Fp8Error, match="already has float8 layers"):
        convert_to_fp8(model, spec(filter="all"))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


E4M3, E5M2 = 0.05, 0.08
"""Relative (Frobenius) error bars of one matmul with float8 operands against bf16: e4m3 keeps 3 mantissa bits
(rounding up to 2^-4 per element, ~2-3% rms), e5m2 2 bits (twice that); measured on CPU at K = 256:
e4m3 x e4m3 3.6-3.8%, with an e5m2 gradient 5.8%."""

# recipe -> bars for (out, d input, d weight); 0: computed in bf16, equal to bf16 exactly
BARS = {"tensorwise": (E4M3, E5M2, E5M2), "rowwise": (E4M3, E4M3, E4M3), "rowwise_with_gw_hp": (E4M3, E4M3, 0)}


@needs_torchao
@pytest.mark.parametrize("recipe", sorted(BARS))
def test_an_fp8_layer_matches_bf16_within_fp8_tolerance(recipe):
    """One converted Linear against its bf16 twin: output, d input and d weight, each within its recipe's bar
    and above zero (fp8 must not be a no-op), except rowwise_with_gw_hp's d weight, which is bf16's exactly."""
    torch.manual_seed(0)
    ref = nn.Linear(256, 128, bias=False).to(torch.bfloat16)
    model = nn.Sequential(nn.Linear(256, 128, bias=False).to(torch.bfloat16))
    model[0].load_state_dict(ref.state_dict())
    convert_to_fp8(model, spec(recipe=recipe, filter="all"))
    x = torch.randn(64, 256, dtype=torch.bfloat16)
    x_ref, x_fp8 = x.clone().requires_grad_(), x.clone().requires_grad_()
    grad = torch.randn(64, 128, dtype=torch.bfloat16)
    y_ref, y_fp8 = ref(x_ref), model(x_fp8)
    y_ref.backward(grad)
    y_fp8.backward(grad)
    got = (rel(y_fp8, y_ref), rel(x_fp8.grad, x_ref.grad), rel(model[0].weight.grad, ref.weight.grad))
    for what, err, bar in zip(("out", "d input", "d weight"), got, BARS[recipe], strict=True):
        assert (0 < err < bar) if bar else err == 0, (what, err)


@needs_torchao
def test_an_fp8_model_stays_close_to_bf16():
    torch.manual_seed(0)
    ref = llama(64, 128, 2, 4, 2).to(torch.bfloat16)
    fp8 = llama(64, 128, 2, 4, 2).to(torch.bfloat16)
    fp8.load_state_dict(ref.state_dict())
    convert_to_fp8(fp8, spec(filter="all"))
    ids = torch.randint(0, 1024, (2, 16))
    assert 0 < rel(fp8(ids), ref(ids)) < 0.05


@needs_torchao
def test_lora_keeps_adapters_in_bf16_and_converts_the_frozen_base():
    from trainhub.engine.models.own import add_lora
    from trainhub.job import LoraAdapter

    torch.manual_seed(0)
    model = add_lora(llama(64, 128, 2, 4, 2).to(torch.bfloat16), LoraAdapter(type="lora", rank=16, targets="all-linear"))
    report = convert_to_fp8(model, spec(filter="all"))
    converted = float8_names(model)
    assert converted == set(report.converted) and len(converted) == 2 * 7
    assert all(name.endswith(".base_layer") for name in converted)
    assert {c.kept for c in report.choices if ".lora_" in c.name} == {"LoRA adapter"}
    model(torch.randint(0, 1024, (2, 16))).float().square().mean().backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None}
    assert trained and all(".lora_" in n for n in trained)


def test_plan_says_fp8_and_where_the_layer_choice_shows():
    lines = RUNNERS["native"].plan_lines(job({"type": "fp8", "recipe": "rowwise"}))
    assert "  precision: fp8 rowwise (torchao float8), filter measured; which Linear layers convert is decided at " \
           "start and listed in the start row's notes (engine/fp8.py)" in lines


@needs_torchao
def test_the_fp8_preset_compiles_and_passes_the_native_check_on_an_h100(tmp_path):
    from tests.conftest import ROOT
    from trainhub.compose import compose
    from trainhub.jobfile import validate

    path = tmp_path / "job.yaml"
    path.write_text(f"extends: fp8\nname: t\nmethod: pretrain\nmodel: {{path: some/model}}\n"
                    f"data: {{train: {ROOT / 'config/data/stories.jsonl'}, format: text}}\ntrain: {{max_steps: 2}}\n")
    raw, origins = compose(path)
    loaded = validate(raw, str(path), origins)
    assert (loaded.backend.type, loaded.backend.compile, loaded.train.precision.recipe) == ("native", True, "tensorwise")
    assert [p for p in RUNNERS["native"].check(loaded, H100) if p.where == "train.precision"] == []


@needs_torchao
def test_the_hf_path_model_gets_the_same_choice():
    """transformers' LlamaForCausalLM (model.impl hf): the same module names, so the same decisions and swap."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    hf = LlamaForCausalLM(config)
    report = convert_to_fp8(hf, spec(filter="all", skip_last_layers=1))
    own = choose_layers(llama(64, 128, 2, 4, 2), spec(filter="all", skip_last_layers=1))
    assert [(c.name, c.kept) for c in report.choices] == [(c.name, c.kept) for c in own.choices]
    assert float8_names(hf) == {f"model.layers.0.{m}" for m in ("self_attn.q_proj", "self_attn.k_proj",
                                "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                "mlp.down_proj")}


def test_the_hub_reads_compute_capabilities_from_nvidia_smi(monkeypatch):
    from trainhub import host

    calls = []

    def smi(visible, tool, *args):
        calls.append((tool, *args))
        return {"--query-gpu=compute_cap": "9.0\n8.0\n", "--query-gpu=name": "H100\nA100\n"}[args[0]]

    monkeypatch.setattr(host, "_smi", smi)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert host._nvidia_capabilities() == ((9, 0), (8, 0))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert host._nvidia_capabilities() == ((8, 0),)
    monkeypatch.setattr(host, "_smi", lambda *a: "[N/A]\n")  # a driver without compute_cap: not known
    assert host._nvidia_capabilities() == ()
    assert ("nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader") in calls


def test_the_microbenchmark_turns_slow_grid_points_into_the_filter_s_boxes():
    """research/bench_fp8_filter.py: each slow (K, N) a box, the grid's edges open to infinity, dominated boxes
    dropped; torchao's rowwise table, measured on this grid, gives back engine/fp8.py's rowwise boxes."""
    import sys

    from tests.conftest import ROOT

    sys.path.insert(0, str(ROOT / "research"))
    from bench_fp8_filter import INF, KS, NS, boxes

    from trainhub.engine.fp8 import SLOW

    slow_points = [(k, n) for k in KS for n in NS if slow("rowwise", k, n)]
    assert boxes(slow_points, KS, NS) == sorted(SLOW["rowwise"])
    assert boxes([(1024, 512), (2048, 512), (1024, 1024)], KS, NS) == [(1024, 1024), (2048, 512)]
    assert boxes([(14336, 512)], KS, NS) == [(INF, 512)]


@needs_torchao
def test_float8_all_gather_is_for_tensorwise_only():
    """What parallelize passes under FSDP2: weights all-gathered in float8, which torchao allows for tensorwise."""
    from trainhub.engine.fp8 import float8_config

    assert float8_config("tensorwise", float8_all_gather=True).enable_fsdp_float8_all_gather is True
    assert float8_config("tensorwise").enable_fsdp_float8_all_gather is False
    with pytest.raises(Fp8Error, match="recipe tensorwise only, not rowwise"):
        float8_config("rowwise", float8_all_gather=True)


def test_float8_all_gather_under_fsdp2_tensorwise_only_and_scales_after_each_step(monkeypatch):
    """parallelize asks for float8 all-gather where torchao has it (FSDP2, tensorwise); setup then has every
    optimizer step followed by one precompute of the float8 scales over the model."""
    from trainhub.engine.fp8 import float8_all_gather, precompute_scales_after_steps

    assert float8_all_gather(spec(recipe="tensorwise"), "fsdp2")
    assert not float8_all_gather(spec(recipe="rowwise"), "fsdp2")
    assert not float8_all_gather(spec(recipe="tensorwise"), "ddp")
    assert not float8_all_gather(job("bf16").train.precision, "fsdp2")
    if not find_spec("torchao"):
        return
    import torchao.float8

    seen = []
    monkeypatch.setattr(torchao.float8, "precompute_float8_dynamic_scale_for_fsdp", seen.append)
    model = nn.Linear(4, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    precompute_scales_after_steps(optimizer, model)
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    optimizer.step()
    assert seen == [model, model]
