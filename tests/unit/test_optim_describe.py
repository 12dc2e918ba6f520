"""describe_groups (engine/optim/describe.py): the lines `trainhub plan` can show, built on the meta device from
the job alone: which parameters each optimizer steps, at which peak rate."""

from __future__ import annotations

import io
import json

from tests.conftest import tiny_pretrain_job
from trainhub.engine.optim.describe import _meta_model, describe_groups, main
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


def test_the_model_is_shapes_only(tmp_path):
    """Meta tensors: describing an 8B job must not allocate 32 GB nor draw its initial weights."""
    for adapter in ({"type": "full"}, {"type": "lora", "rank": 4}):
        job = Job.model_validate(tiny_pretrain_job(tmp_path, adapter=adapter))
        assert {p.device.type for p in _meta_model(job).parameters()} == {"meta"}


def test_lora_matrices_listed_under_adamw(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                tie_word_embeddings=True).save_pretrained(tmp_path / "model")  # a config is all the meta model needs
    job = tiny_pretrain_job(tmp_path, optim={"type": "muon", "lr": 0.01}, adapter={"type": "lora", "rank": 4})
    job["model"] = {"path": str(tmp_path / "model")}
    lines = describe_groups(Job.model_validate(job))[1:]
    assert len(lines) == 1 and lines[0].split()[:2] == ["matrix", "adamw"]  # only the adapters train
    assert "lora_A" in lines[0] and "14 tensors" in lines[0]


def test_main_answers_one_json_object(tmp_path):
    """`python -m trainhub.engine describe`, as plan runs it: the job's JSON in, {"lines"} or {"error"} out."""
    good = Job.model_validate(tiny_pretrain_job(tmp_path, optim={"type": "adamw", "lr": 0.001}))
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"model_type": "no-such-family"}')
    bad = good.model_copy(update={"model": good.model.model_copy(update={"init": None,
                                                                         "path": str(tmp_path / "model")})})
    answers = []
    for job in (good, bad):
        out = io.StringIO()
        answers.append((main(io.StringIO(job.model_dump_json()), out), json.loads(out.getvalue())))
    (code, ok), (bad_code, err) = answers
    assert code == 0 and ok["lines"][0].startswith("optim adamw: peak lr 0.001")
    assert [line.split()[0] for line in ok["lines"][1:]] == ["head", "matrix", "vector"]  # tied: no embed group
    assert bad_code == 1 and err == {"error": f"model.path: cannot read the model config {tmp_path / 'model'}/"
                                              f"config.json: The checkpoint you are trying to load has model type "
                                              f"`no-such-family` but Transformers does not recognize this "
                                              f"architecture. This could be because of an issue with the "
                                              f"checkpoint, or because your version of Transformers is out of date."}
