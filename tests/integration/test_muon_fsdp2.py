"""Muon under FSDP2 (engine/optim/muon.py _step_sharded): two gloo processes, each holding a slice of every matrix,
make the same update as one process holding whole matrices, step after step (issue 24; issue 27's optimizers)."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainhub.engine.optim.muon import MuonWithAdamW

DIMS = [16, 33, 40, 24, 24, 24, 7]  # weights 33x16, 40x33 (tall; 33 and 7 rows shard unevenly), 24x40, 7x24
STEPS = 3                             # (wide), 24x24 twice (a shape batched with its repeat)


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


def _optimizer(model, coefficients: str) -> MuonWithAdamW:
    common = {"lr_mult": 1.0, "lr": 0.02, "weight_decay": 0.1}
    return MuonWithAdamW([
        {"params": [m.weight for m in model.layers], "algo": "muon", "role": "matrix", **common, "momentum": 0.95,
         "nesterov": True, "ns_coefficients": coefficients, "ns_steps": 5, "eps": 1e-7,
         "update_scale": "match_rms_adamw"},
        {"params": [model.norm], "algo": "adamw", "role": "vector", **common, "betas": (0.9, 0.95), "eps": 1e-8,
         "fused": False}])


def _train(model, optimizer) -> None:
    for step in range(STEPS):
        x = torch.randn(8, DIMS[0], generator=torch.Generator().manual_seed(step))
        model(x).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()


def _worker(rank: int, port: int, coefficients: str, out: str) -> None:
    from torch.distributed.fsdp import fully_shard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = _model()
        for layer in model.layers:
            fully_shard(layer)
        fully_shard(model)
        optimizer = _optimizer(model, coefficients)
        _train(model, optimizer)
        full = [p.full_tensor() for p in model.parameters()]
        if rank == 0:
            torch.save(full, out)
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("coefficients", ["quintic", pytest.param("polar_express", marks=pytest.mark.slow)])
def test_two_sharded_processes_update_as_one(tmp_path, coefficients):
    model = _model()
    _train(model, _optimizer(model, coefficients))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "sharded.pt")
    mp.spawn(_worker, args=(port, coefficients, out), nprocs=2, join=True)
    sharded = torch.load(out)
    start = [p.detach() for p in _model().parameters()]
    names = [n for n, _ in model.named_parameters()]
    for name, s0, one, two in zip(names, start, model.parameters(), sharded, strict=True):
        assert (one - s0).abs().max() > 1e-3, f"param {name} did not move"  # the test would pass vacuously
        torch.testing.assert_close(two, one.detach(), atol=1e-6, rtol=0, msg=f"param {name}")
