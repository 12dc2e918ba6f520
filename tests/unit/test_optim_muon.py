"""Muon (engine/optim/muon.py): its update equals torch.optim.Muon's bitwise on CPU, batching changes nothing,
Polar Express lands near 1, the role groups and their rates, LoRA's routing, and an exact state round trip."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.unit.optim_helpers import assert_same, fake_grads, loss_grads, params_of, round_trip, tiny_llama
from trainhub.engine.optim import build_optimizer, set_lr
from trainhub.engine.optim.muon import MuonWithAdamW, orthogonalize, update_scale
from trainhub.job import Muon

CPU = torch.device("cpu")
SHAPES = [(32, 64), (64, 32), (32, 64), (48, 48), (16, 40), (8, 3, 2)]  # wide, tall, a repeat, square, odd, 3-D


def _muon_group(params, **over) -> dict:
    group = {"params": params, "algo": "muon", "role": "matrix", "lr_mult": 1.0, "lr": 0.02, "weight_decay": 0.1,
             "momentum": 0.9, "nesterov": True, "ns_coefficients": "quintic", "ns_steps": 5, "eps": 1e-7,
             "update_scale": "original"}
    return {**group, **over}


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("rule", ["original", "match_rms_adamw"])
def test_update_equals_torch_muon(nesterov, rule):
    """Same tensors, same settings (quintic, 5 steps, eps 1e-7): bitwise equal parameters and momentum after
    4 steps. torch.optim.Muon takes 2-D matrices only, so the 3-D shape is left out here."""
    torch.manual_seed(0)
    ours_p = [torch.nn.Parameter(torch.randn(s)) for s in SHAPES[:-1]]
    ref_p = [torch.nn.Parameter(p.detach().clone()) for p in ours_p]
    ours = MuonWithAdamW([_muon_group(ours_p, nesterov=nesterov, update_scale=rule)])
    ref = torch.optim.Muon(ref_p, lr=0.02, weight_decay=0.1, momentum=0.9, nesterov=nesterov, adjust_lr_fn=rule)
    for step in range(4):
        fake_grads(ours_p, step)
        fake_grads(ref_p, step)
        ours.step()
        ref.step()
    assert_same(ours_p, ref_p)
    assert_same([ours.state[p]["momentum_buffer"] for p in ours_p], [ref.state[p]["momentum_buffer"] for p in ref_p])


def test_batched_equals_one_by_one():
    torch.manual_seed(0)
    g = torch.randn(5, 24, 40)
    for name in ("quintic", "polar_express"):
        batched = orthogonalize(g, name)
        assert torch.equal(batched, torch.stack([orthogonalize(m, name) for m in g]))
        # a tall matrix iterates on X^T X from the right: the transpose of the wide form in exact arithmetic,
        # the same products summed in another order in bf16 (quintic: 15% of entries differ, by <= 1 bf16 ulp
        # of the largest, 2**-8)
        torch.testing.assert_close(orthogonalize(g.mT, name), batched.mT, atol=2 ** -7, rtol=0)


def test_a_step_of_mixed_shapes_equals_steps_of_each_alone():
    """The optimizer batches matrices by shape (a matrix with its transpose); each one's update is what it
    would get on its own, a 3-D weight included (orthogonalised as out x rest)."""
    torch.manual_seed(0)
    together = [torch.nn.Parameter(torch.randn(s)) for s in SHAPES]
    alone = [torch.nn.Parameter(p.detach().clone()) for p in together]
    opt = MuonWithAdamW([_muon_group(together)])
    singles = [MuonWithAdamW([_muon_group([p])]) for p in alone]
    for step in range(3):
        fake_grads(together, step)
        fake_grads(alone, step)
        opt.step()
        for s in singles:
            s.step()
    assert_same(together, alone)


def test_polar_express_lands_nearer_one_than_the_quintic():
    """A 64 x 128 matrix with singular values spread over [1e-2, 1]: after 5 bf16 steps Polar Express keeps
    them within [0.8, 1.2] (mean |s-1| < 0.1); the quintic leaves some near 0.7."""
    torch.manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(64, 64))
    v, _ = torch.linalg.qr(torch.randn(128, 128))
    g = u @ torch.diag(torch.logspace(-2, 0, 64)) @ v[:64]
    polar = torch.linalg.svdvals(orthogonalize(g, "polar_express").float())
    quintic = torch.linalg.svdvals(orthogonalize(g, "quintic").float())
    assert polar.min() > 0.8 and polar.max() < 1.2 and (polar - 1).abs().mean() < 0.1
    assert quintic.min() < 0.75 < polar.min()
    assert (polar - 1).abs().mean() < (quintic - 1).abs().mean()


def test_zero_gradient_gives_no_update():
    assert torch.equal(orthogonalize(torch.zeros(8, 16)), torch.zeros(8, 16, dtype=torch.bfloat16))


def test_update_scale_rules():
    assert update_scale("match_rms_adamw", (2048, 8192)) == pytest.approx(0.2 * 8192 ** 0.5)
    assert update_scale("original", (8192, 2048)) == pytest.approx(2.0)
    assert update_scale("original", (2048, 8192)) == 1.0
    assert update_scale("none", (5, 7)) == 1.0


def test_match_rms_adamw_update_has_rms_near_point_two():
    """What the default rule promises: the update's RMS is ~0.2 x lr whatever the shape."""
    torch.manual_seed(0)
    for shape in [(16, 64), (64, 16), (48, 48)]:
        p = torch.nn.Parameter(torch.zeros(shape))
        opt = MuonWithAdamW([_muon_group([p], lr=1.0, weight_decay=0.0, update_scale="match_rms_adamw",
                                         ns_coefficients="polar_express")])
        p.grad = torch.randn(shape)
        opt.step()
        assert p.detach().pow(2).mean().sqrt().item() == pytest.approx(0.2, rel=0.12)


def test_groups_roles_and_rates():
    model = tiny_llama(tied=False)
    spec = Muon(lr=0.01, adamw={"lr": 0.002}, lr_mult={"embed": 2.0, "head": 0.5})
    opt = build_optimizer(spec, model, CPU)
    by_role = {g["role"]: g for g in opt.param_groups}
    assert [g["algo"] for g in opt.param_groups] == ["adamw", "adamw", "muon", "adamw"]
    assert list(by_role) == ["embed", "head", "matrix", "vector"]
    assert by_role["matrix"]["lr"] == pytest.approx(0.01)
    assert by_role["embed"]["lr"] == pytest.approx(0.004) and by_role["head"]["lr"] == pytest.approx(0.001)
    assert by_role["vector"]["weight_decay"] == 0.0 and by_role["matrix"]["weight_decay"] == 0.1
    assert all(p.ndim == 2 for p in by_role["matrix"]["params"]) and len(by_role["matrix"]["params"]) == 14
    set_lr(opt, 0.005)  # the schedule halves the peak: every group halves, the ratios stay
    assert by_role["embed"]["lr"] == pytest.approx(0.002) and by_role["matrix"]["lr"] == pytest.approx(0.005)


def test_adamw_part_equals_torch_adamw():
    """The embed, head and vector groups step exactly as torch.optim.AdamW over the same groups."""
    model = tiny_llama(tied=False)
    ref_model = copy.deepcopy(model)
    opt = build_optimizer(Muon(lr=0.01, adamw={"weight_decay": 0.05}), model, CPU)
    adamw_groups = [g for g in opt.param_groups if g["algo"] == "adamw"]
    ref_params = dict(ref_model.named_parameters())
    names = {id(p): n for n, p in model.named_parameters()}
    ref = torch.optim.AdamW([{"params": [ref_params[names[id(p)]] for p in g["params"]], "lr": g["lr"],
                              "weight_decay": g["weight_decay"]} for g in adamw_groups], betas=(0.9, 0.95), eps=1e-8)
    for step in range(3):
        fake_grads(params_of(model), step)
        fake_grads(params_of(ref_model), step)
        opt.step()
        ref.step()
    assert_same([p for g in adamw_groups for p in g["params"]], [p for g in ref.param_groups for p in g["params"]])


@pytest.mark.parametrize("lora", ["adamw", "muon"])
def test_lora_matrices_go_where_optim_lora_says(lora):
    model = tiny_llama(lora=True)
    opt = build_optimizer(Muon(lr=0.01, lora=lora), model, CPU)
    names = {id(p): n for n, p in model.named_parameters()}
    by_algo = {"muon": [], "adamw": []}
    for g in opt.param_groups:
        by_algo[g["algo"]] += [names[id(p)] for p in g["params"]]
    lora_names = [n for n in names.values() if "lora_" in n]
    assert lora_names and set(lora_names) <= set(by_algo[lora])
    other = "adamw" if lora == "muon" else "muon"
    assert not any("lora_" in n for n in by_algo[other])
    before = [p.detach().clone() for p in params_of(model)]
    loss_grads(model, 0)
    opt.step()
    assert all(not torch.equal(a, b) for a, b in zip(before, params_of(model), strict=True))  # A and B both move


def test_state_dict_round_trip_gives_bitwise_equal_steps():
    """Three steps, save (torch.save, load with weights_only=True), then two more: a fresh optimizer over a copy
    of the model, loaded from the saved state, takes exactly the same two steps."""
    spec = Muon(lr=0.01, ns_coefficients="polar_express", adamw={"weight_decay": 0.01})
    model = tiny_llama(tied=True)
    opt = build_optimizer(spec, model, CPU)
    for step in range(3):
        model.zero_grad()
        loss_grads(model, step)
        opt.step()
    saved, twin = round_trip(opt), copy.deepcopy(model)
    twin_opt = build_optimizer(spec, twin, CPU)
    twin_opt.load_state_dict(saved)
    assert [g["algo"] for g in twin_opt.param_groups] == [g["algo"] for g in opt.param_groups]
    for step in range(3, 5):
        for m, o in ((model, opt), (twin, twin_opt)):
            set_lr(o, 0.01 * (5 - step) / 5)
            m.zero_grad()
            loss_grads(m, step)
            o.step()
    assert_same(params_of(model), params_of(twin))
