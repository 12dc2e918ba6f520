"""Checkpoints: what a folder holds (values, not just names), `latest`, keep_last, and a crashed save."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from trainhub.engine.checkpoint import load_into
from trainhub.engine.checkpoint import save_checkpoint as _save
from trainhub.resume import find_checkpoint

JOB = {"name": "t", "optim": {"lr": 0.01}}


def save_checkpoint(run_dir, step, model, optimizer, state, keep_last, is_best=False):
    return _save(run_dir, step, model, optimizer, state, JOB, keep_last, is_best)


def saved_state(folder) -> dict:
    """state.json without the RNG states and save time (checked separately)."""
    state = json.loads((folder / "state.json").read_text())
    return {k: v for k, v in state.items() if k not in ("python_rng", "numpy_rng", "saved_at")}


@pytest.fixture
def trained():
    """A tiny Llama and an AdamW that has taken one step (so it has exp_avg/exp_avg_sq state)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16,
                                         tie_word_embeddings=True))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.arange(8).view(1, 8)
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    return model, optimizer


def steps_in(root) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def latest(root) -> str:
    return (root / "latest").read_text()


def test_checkpoint_folder_contents(tmp_path, trained):
    model, optimizer = trained
    state = {"tokens": 64, "position": {"epoch": 0, "index": 8}, "job_hash": "0123456789abcdef"}
    folder = save_checkpoint(tmp_path, 1, model, optimizer, state, keep_last=2)
    assert folder == tmp_path / "checkpoints" / "step-00000001"
    assert {"model.safetensors", "optimizer.pt", "state.json"} <= {p.name for p in folder.iterdir()}

    weights = load_file(folder / "model.safetensors")
    expected = model.state_dict()
    assert weights.keys() <= expected.keys()
    assert "model.embed_tokens.weight" in weights
    for name, tensor in weights.items():
        assert torch.equal(tensor, expected[name]), name

    saved = torch.load(folder / "optimizer.pt", weights_only=True)
    live = optimizer.state_dict()
    assert saved["param_groups"] == live["param_groups"]
    assert saved["state"].keys() == live["state"].keys() and len(live["state"]) > 0
    for k in live["state"]:
        for field in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(saved["state"][k][field], live["state"][k][field])

    assert saved_state(folder) == {"step": 1, **state}
    assert json.loads((folder / "job.json").read_text()) == JOB
    assert set(torch.load(folder / "rng.pt", weights_only=True)) >= {"cpu"}
    assert latest(tmp_path / "checkpoints") == "step-00000001\n"


def test_latest_names_the_newest_and_keep_last_keeps_two(tmp_path, trained):
    model, optimizer = trained
    root = tmp_path / "checkpoints"
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, model, optimizer, {"tokens": step}, keep_last=2)
        assert latest(root) == f"step-{step:08d}\n"
    assert steps_in(root) == ["step-00000020", "step-00000030"]
    assert saved_state(root / "step-00000030") == {"step": 30, "tokens": 30}
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == ["latest"]


def test_keep_last_one(tmp_path, trained):
    model, optimizer = trained
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, optimizer, {}, keep_last=1)
    assert steps_in(tmp_path / "checkpoints") == ["step-00000003"]


def test_step_numbers_sort_numerically(tmp_path, trained):
    model, optimizer = trained
    for step in (9, 10, 100):
        save_checkpoint(tmp_path, step, model, optimizer, {}, keep_last=2)
    assert steps_in(tmp_path / "checkpoints") == ["step-00000010", "step-00000100"]


def test_stale_temporary_folder_from_a_crash(tmp_path, trained):
    model, optimizer = trained
    root = tmp_path / "checkpoints"
    save_checkpoint(tmp_path, 1, model, optimizer, {}, keep_last=2)
    save_checkpoint(tmp_path, 2, model, optimizer, {}, keep_last=2)
    # A crash while writing step 3: a half-written temporary folder, `latest` untouched.
    crashed = root / ".tmp-step-00000003"
    crashed.mkdir()
    (crashed / "model.safetensors").write_bytes(b"\x00" * 5)
    (crashed / "junk").write_text("partial")
    assert latest(root) == "step-00000002\n"

    # The next save completes; leftovers of the crashed one are removed.
    folder = save_checkpoint(tmp_path, 3, model, optimizer, {"tokens": 3}, keep_last=2)
    assert not crashed.exists()
    assert "junk" not in {p.name for p in folder.iterdir()}
    assert torch.equal(load_file(folder / "model.safetensors")["model.norm.weight"], model.model.norm.weight)
    assert latest(root) == "step-00000003\n"
    assert steps_in(root) == ["step-00000002", "step-00000003"]


def test_stale_temporary_folder_of_another_step_is_not_a_checkpoint(tmp_path, trained):
    model, optimizer = trained
    root = tmp_path / "checkpoints"
    save_checkpoint(tmp_path, 1, model, optimizer, {}, keep_last=2)
    (root / ".tmp-step-00000009").mkdir()
    save_checkpoint(tmp_path, 2, model, optimizer, {}, keep_last=2)
    save_checkpoint(tmp_path, 3, model, optimizer, {}, keep_last=2)
    assert latest(root) == "step-00000003\n"
    # keep_last counts complete checkpoints only: the stale folder does not push step 2 out, and it is removed.
    assert steps_in(root) == ["step-00000002", "step-00000003"]


def test_best_is_kept_beyond_keep_last(tmp_path, trained):
    model, optimizer = trained
    root = tmp_path / "checkpoints"
    for step, best in ((1, True), (2, False), (3, False), (4, False)):
        save_checkpoint(tmp_path, step, model, optimizer, {}, keep_last=2, is_best=best)
    assert steps_in(root) == ["step-00000001", "step-00000003", "step-00000004"]
    assert (root / "best").read_text() == "step-00000001\n"


def test_saving_a_step_again_never_overwrites_in_place(tmp_path, trained):
    """After resuming from an earlier checkpoint the same step is saved again: under a new name, so the
    folder `latest` names is never half-deleted; retention follows the order of writing, not the names."""
    model, optimizer = trained
    root = tmp_path / "checkpoints"
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, optimizer, {}, keep_last=2)
    again = save_checkpoint(tmp_path, 2, model, optimizer, {}, keep_last=2)
    assert again.name == "step-00000002-r1"
    assert latest(root) == "step-00000002-r1\n"
    assert steps_in(root) == ["step-00000002-r1", "step-00000003"]


def test_load_restores_weights_optimizer_and_rng(tmp_path, trained):
    import random

    from transformers import LlamaConfig, LlamaForCausalLM

    model, optimizer = trained
    torch.manual_seed(123)
    random.seed(7)
    save_checkpoint(tmp_path, 5, model, optimizer, {"tokens": 40}, keep_last=2)
    expected_torch, expected_py = torch.rand(3), random.random()

    torch.manual_seed(999)
    random.seed(1)
    fresh = LlamaForCausalLM(model.config)
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    state = load_into(find_checkpoint("latest", tmp_path), fresh, fresh_opt, torch.device("cpu"))
    assert state["step"] == 5 and state["tokens"] == 40
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert fresh.lm_head.weight is fresh.model.embed_tokens.weight  # tying survives the load
    for a, b in zip(optimizer.state_dict()["state"].values(), fresh_opt.state_dict()["state"].values(), strict=True):
        assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])
    assert torch.equal(torch.rand(3), expected_torch) and random.random() == expected_py
    assert isinstance(LlamaConfig, type)
