"""describe_groups (engine/optim/describe.py): the lines `trainhub plan` can show, built on the meta device from
the job alone: which parameters each optimizer steps, at which peak rate."""

from __future__ import annotations

from tests.conftest import tiny_pretrain_job
from trainhub.engine.optim.describe import describe_groups
from trainhub.job import Job


def _lines(job: dict) -> dict[str, str]:
    lines = describe_groups(Job.model_validate(job))
    return {line.split()[0]: line for line in lines[1:]} | {"head_line": lines[0]}


def test_muon_matrices_and_adamw_rest_with_their_rates(tmp_path):
    job = tiny_pretrain_job(tmp_path, model={"init": {"tie_embeddings": False}},
                            optim={"type": "muon", "lr": 0.01, "adamw": {"lr": 0.002}, "lr_mult": {"embed": 2.0}})
    by_role = _lines(job)
    assert by_role["head_line"].startswith("optim muon: peak lr 0.01")
    assert by_role["matrix"].split()[1:4] == ["muon", "lr", "0.01"]
    assert "14 tensors, 18,432 params: model.layers.0.self_attn.q_proj.weight" in by_role["matrix"]
    assert by_role["embed"].split()[1:5] == ["adamw", "lr", "0.004", "(x0.4)"]  # 0.002 x 2, relative to 0.01
    assert "model.embed_tokens.weight" in by_role["embed"] and "lm_head.weight" in by_role["head"]
    assert "weight_decay 0 " in by_role["vector"]


def test_lora_matrices_listed_under_adamw(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                tie_word_embeddings=True).save_pretrained(tmp_path / "model")  # a config is all the meta model needs
    job = tiny_pretrain_job(tmp_path, optim={"type": "muon", "lr": 0.01}, adapter={"type": "lora", "rank": 4})
    job["model"] = {"path": str(tmp_path / "model")}
    lines = describe_groups(Job.model_validate(job))[1:]
    assert len(lines) == 1 and lines[0].split()[:2] == ["matrix", "adamw"]  # only the adapters train
    assert "lora_A" in lines[0] and "14 tensors" in lines[0]
