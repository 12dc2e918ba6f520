"""Optimizers on FSDP2's shards: two gloo processes, each holding a slice of every matrix, make the same update as
one process holding whole tensors, step after step. Muon through its sharded step (engine/optim/muon.py
_step_sharded); Lion and schedule-free AdamW because their steps are element-wise (issue 24; issue 27); AdamW
through ShardLocalAdamW, whose kernels step the local shards as plain tensors. Every step clips the gradients
(engine/step.py clip_gradients: local squares and one all-reduce over the shards), to a norm they exceed."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainhub.engine.optim.adamw import ShardLocalAdamW
from trainhub.engine.optim.muon import MuonWithAdamW
from trainhub.engine.step import clip_gradients

DIMS = [16, 33, 40, 24, 24, 24, 7]  # weights 33x16, 40x33 (tall; 33 and 7 rows shard unevenly), 24x40, 7x24
STEPS = 3                             # (wide), 24x24 twice (a shape batched with its repeat)
MAX_NORM = 0.003


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(i, o, bias=False) for i, o in zip(DIMS, DIMS[1:], strict=False))
        self.norm = torch.nn.Parameter(torch.ones(DIMS[-1]))

    def forward(self, x):
        for layer in self.layers:
            x = torch.tanh(layer(x))
        return x * self.norm


def _model() -> Net:
    return Net()


def _optimizer(model, name: str) -> torch.optim.Optimizer:
    common = {"lr_mult": 1.0, "lr": 0.02, "weight_decay": 0.1}
    matrices, vectors = [m.weight for m in model.layers], [model.norm]
    if name in ("quintic", "polar_express"):
        return MuonWithAdamW([
            {"params": matrices, "algo": "muon", "role": "matrix", **common, "momentum": 0.95, "nesterov": True,
             "ns_coefficients": name, "ns_steps": 5, "eps": 1e-7, "update_scale": "match_rms_adamw"},
            {"params": vectors, "algo": "adamw", "role": "vector", **common, "betas": (0.9, 0.95), "eps": 1e-8,
             "fused": False}])
    groups = [{"params": matrices, "weight_decay": 0.1}, {"params": vectors, "weight_decay": 0.0}]
    if name == "adamw":
        return ShardLocalAdamW(groups, lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    if name == "lion":
        from pytorch_optimizer import Lion

        return Lion(groups, lr=1e-3, betas=(0.9, 0.99), weight_decouple=True)
    from schedulefree import AdamWScheduleFree

    optimizer = AdamWScheduleFree(groups, lr=1e-2, betas=(0.9, 0.95), warmup_steps=0)
    optimizer.train()
    return optimizer


def _train(model, optimizer) -> list[float]:
    norms = []
    for step in range(STEPS):
        x = torch.randn(8, DIMS[0], generator=torch.Generator().manual_seed(step))
        model(x).square().mean().backward()
        norms.append(float(clip_gradients(list(model.parameters()), MAX_NORM)))
        optimizer.step()
        optimizer.zero_grad()
    return norms


def _worker(rank: int, port: int, name: str, out: str) -> None:
    from torch.distributed.fsdp import fully_shard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = _model()
        for layer in model.layers:
            fully_shard(layer)
        fully_shard(model)
        optimizer = _optimizer(model, name)
        norms = _train(model, optimizer)
        full = [p.full_tensor() for p in model.parameters()]
        if rank == 0:
            torch.save((full, norms), out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("name", ["quintic", "lion", "adamw", pytest.param("polar_express", marks=pytest.mark.slow),
                                  pytest.param("schedule_free", marks=pytest.mark.slow)])
def test_two_sharded_processes_update_as_one(tmp_path, name):
    model = _model()
    norms = _train(model, _optimizer(model, name))
    assert norms[0] > MAX_NORM  # the clip bites
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "sharded.pt")
    mp.spawn(_worker, args=(port, name, out), nprocs=2, join=True)
    sharded, sharded_norms = torch.load(out)
    assert sharded_norms == pytest.approx(norms, rel=1e-6)
    start = [p.detach() for p in _model().parameters()]
    for param, s0, one, two in zip([n for n, _ in model.named_parameters()], start, model.parameters(), sharded,
                                   strict=True):
        assert (one - s0).abs().max() > 1e-4, f"{name}: {param} did not move"  # else the test passes vacuously
        torch.testing.assert_close(two, one.detach(), atol=1e-6, rtol=0, msg=f"{name}: {param}")
