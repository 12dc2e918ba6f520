"""Activation checkpointing (engine/models/checkpointing.py): train.grad_checkpointing none | full | selective and
train.activation_offload, on trainhub's own model and on transformers' (fp32, CPU).

- every mode (and offload) gives the gradients of no checkpointing, exactly: the recomputation runs the same
  ops on the same inputs (LoRA dropout too: the RNG state is replayed);
- selective recomputes the element-wise ops but no matmul: the backward runs as many matmuls as without
  checkpointing, full runs more;
- peak memory (torch.profiler's CPU allocator events, research/bench_checkpointing.py): full < selective < none;
- offload moves each block's input (what full checkpointing keeps) through save_on_cpu;
- each block compiles on its own with its checkpoint inside (slow: torch.compile on CPU);
- the job: true/false still mean full/none; other backends refuse selective and offload by name.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tests.unit.test_models import hf_model, ours_like
from trainhub.engine.loss import cross_entropy
from trainhub.engine.models import hf as hf_path
from trainhub.engine.models import hidden_states
from trainhub.engine.models.checkpointing import checkpoint_kwargs, saves
from trainhub.engine.models.own import add_lora, compile_blocks
from trainhub.host import Host
from trainhub.job import Job, LoraAdapter
from trainhub.runners import RUNNERS

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "research"))
from bench_checkpointing import peak_cpu_bytes  # noqa: E402

MODES = ("none", "full", "selective")


def _ids(model, b=2, t=13, seed=3):
    return torch.randint(0, model.config.vocab_size, (b, t), generator=torch.Generator().manual_seed(seed))


def _own(mode, offload=False, lora_dropout=None):
    model = ours_like(hf_model("qwen3-headdim")).train()
    model.grad_checkpointing = mode
    model.activation_offload = offload
    if lora_dropout is not None:
        model = add_lora(model, LoraAdapter(rank=4, dropout=lora_dropout))
        for n, p in model.named_parameters():
            if "lora_B" in n:
                torch.nn.init.normal_(p, std=0.1, generator=torch.Generator().manual_seed(len(n)))
    return model


def _grads(model, ids, seed=0):
    torch.manual_seed(seed)  # LoRA dropout draws from the global RNG
    loss = cross_entropy(hidden_states(model, {"input_ids": ids}), _head(model), ids, ids.numel())
    loss.backward()
    return loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}


def _head(model):
    from trainhub.engine.models import head_weight

    return head_weight(model)


def _assert_same(a, b):
    torch.testing.assert_close(a[0], b[0], atol=0, rtol=0)
    assert a[1].keys() == b[1].keys() and a[1]
    for name in a[1]:
        torch.testing.assert_close(a[1][name], b[1][name], atol=0, rtol=0, msg=name)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("offload", [False, True])
def test_own_model_gradients_equal_no_checkpointing(mode, offload):
    ids = _ids(_own("none"))
    _assert_same(_grads(_own("none"), ids), _grads(_own(mode, offload), ids))


@pytest.mark.parametrize("mode", ["full", "selective"])
def test_lora_with_dropout_gradients_equal_no_checkpointing(mode):
    ids = _ids(_own("none"))
    _assert_same(_grads(_own("none", lora_dropout=0.3), ids), _grads(_own(mode, lora_dropout=0.3), ids))


@pytest.mark.parametrize("mode", ["full", "selective"])
def test_transformers_path_gradients_equal_no_checkpointing(mode):
    ids = _ids(_hf("none"))
    _assert_same(_grads(_hf("none"), ids), _grads(_hf(mode), ids))


class _Count(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func)
        return func(*args, **(kwargs or {}))


def _backward_ops(mode, make=None):
    model = (make or _own)(mode)
    ids = _ids(model)
    loss = cross_entropy(hidden_states(model, {"input_ids": ids}), _head(model), ids, ids.numel())
    with _Count() as count:
        loss.backward()
    matmuls = sum(saves(op) for op in count.ops)
    rsqrt = sum(op is torch.ops.aten.rsqrt.default for op in count.ops)
    return matmuls, rsqrt


def test_selective_recomputes_norms_but_no_matmul():
    none, full, selective = (_backward_ops(m) for m in MODES)
    assert none[1] == 0 and full[1] > 0 and selective[1] == full[1]  # the norms' rsqrt, recomputed
    assert selective[0] == none[0] < full[0]  # no matmul or attention runs twice under selective


def _hf(mode):
    hf = hf_model("llama-gqa-llama3").train()
    if mode != "none":  # as engine/models/hf.py enables it
        hf.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpoint_kwargs(mode))
    return hf


def test_selective_reaches_transformers_checkpointing():
    none, full, selective = (_backward_ops(m, _hf) for m in MODES)
    assert none[1] == 0 and full[1] > 0 and selective[1] == full[1]
    assert selective[0] == none[0] < full[0]


def test_peak_memory_full_below_selective_below_none():
    peaks = {}
    for mode in MODES:
        model = ours_like(hf_model("llama-gqa-llama3")).train()
        model.grad_checkpointing = mode
        ids = _ids(model, b=4, t=96)
        peaks[mode], _ = peak_cpu_bytes(lambda m=model, i=ids: _grads(m, i))
    assert peaks["full"] < peaks["selective"] < peaks["none"], peaks


def test_offload_moves_each_block_input_through_save_on_cpu(monkeypatch):
    sizes = []
    real = torch.autograd.graph.save_on_cpu

    class Counting(real):
        def __init__(self, pin_memory=False, device_type="cuda"):
            super().__init__(pin_memory, device_type)
            pack = self.pack_hook

            def counted(t):
                sizes.append(tuple(t.shape))
                return pack(t)

            self.pack_hook = counted

    monkeypatch.setattr(torch.autograd.graph, "save_on_cpu", Counting)
    model = _own("full", offload=True)
    ids = _ids(model)
    _grads(model, ids)
    hidden = (ids.shape[0], ids.shape[1], model.config.hidden_size)
    assert sizes.count(hidden) >= model.config.num_hidden_layers, sizes
    sizes.clear()
    with torch.no_grad():
        hidden_states(model, {"input_ids": ids})
    assert sizes == []  # no backward, nothing offloaded


@pytest.mark.slow
@pytest.mark.parametrize("mode,offload", [("selective", False), ("full", True)])
def test_compiled_blocks_match_eager(mode, offload):
    ids = _ids(_own("none"))
    eager = _grads(_own("none"), ids)
    model = _own(mode, offload)
    compile_blocks(model)
    loss, grads = _grads(model, ids)
    torch.testing.assert_close(loss, eager[0], atol=1e-5, rtol=1e-5)
    for name, g in grads.items():
        torch.testing.assert_close(g, eager[1][name], atol=1e-4, rtol=1e-4, msg=name)


def _job(**train):
    return Job.model_validate({"name": "t", "model": {"path": "some/model"}, "method": "sft",
                               "data": {"train": "x.jsonl", "format": "messages"},
                               "train": {"max_steps": 1, **train}})


def test_job_keeps_the_boolean_spelling_and_refuses_unknown_modes():
    assert _job(grad_checkpointing=True).train.grad_checkpointing == "full"
    assert _job(grad_checkpointing=False).train.grad_checkpointing == "none"
    assert _job(grad_checkpointing="selective").train.grad_checkpointing == "selective"
    with pytest.raises(ValueError, match="selective"):
        _job(grad_checkpointing="partial")


@pytest.mark.parametrize("backend", ["trl", "unsloth", "llamafactory"])
def test_other_backends_refuse_selective_and_offload_by_name(backend):
    job = _job(grad_checkpointing="selective", activation_offload=True)
    where = {p.where: p.message for p in RUNNERS[backend].check(job, Host(gpus=("NVIDIA H100 80GB HBM3",)))}
    assert backend in where["train.grad_checkpointing"] and "selective" in where["train.grad_checkpointing"]
    assert "native only" in where["train.activation_offload"]
    assert "train.grad_checkpointing" not in {p.where for p in RUNNERS[backend].check(
        _job(grad_checkpointing=True), Host(gpus=("NVIDIA H100 80GB HBM3",)))}


def test_hf_path_offload_flag_reaches_the_decoder():
    model = hf_model("llama-gqa-llama3")
    hf_path.set_offload(model, True)
    assert model.get_decoder().activation_offload is True
