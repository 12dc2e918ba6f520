"""The `data` section of a job: its shorthands, what it refuses, and preflight on data paths
(folders, globs, the new file types; a missing path is named before any work starts)."""

from __future__ import annotations

import re
import sys
import typing

import pytest
from pydantic import ValidationError

from tests.conftest import DATA, tiny_pretrain_job, write_job
from trainhub.data.formats import DETECT, KIND, PARSERS, REASONS
from trainhub.job import FORMAT_FIELDS, METHOD_FORMATS, DataSection, DataSource
from trainhub.jobfile import JobError, load


def refused(match: str, **data) -> None:
    with pytest.raises(ValidationError, match=match):
        DataSection(**data)


def test_a_path_is_a_source_of_weight_one():
    assert DataSection(train="a.jsonl").train == [DataSource(path="a.jsonl", weight=1.0)]
    mixed = DataSection(train=[{"path": "a.jsonl", "weight": 2.0}, "b/"])
    assert mixed.train == [DataSource(path="a.jsonl", weight=2.0), DataSource(path="b/", weight=1.0)]
    assert DataSection(train="a", eval="e").eval == [DataSource(path="e")]


def test_defaults():
    data = DataSection(train="a.jsonl")
    assert (data.format, data.columns, data.overlong, data.on_error, data.eval_fraction) == \
        ("auto", {}, "truncate", "error", None)
    assert not data.has_eval
    assert DataSection(train="a", eval_fraction=0.1).has_eval and DataSection(train="a", eval="e").has_eval


@pytest.mark.parametrize(("data", "match"), [
    ({"train": []}, "at least 1 item"),
    ({"train": [{"path": "a", "weight": 0}]}, "greater than 0"),
    ({"train": [{"path": "a", "wieght": 2}]}, "wieght"),
    ({"train": "a", "eval": "e", "eval_fraction": 0.1}, "set data.eval or data.eval_fraction, not both"),
    ({"train": "a", "eval_fraction": 1.0}, "less than 1"),
    ({"train": "a", "format": "jsonl"}, "'auto', 'text', 'messages', 'sharegpt', 'alpaca', 'preference' or 'prompt'"),
    ({"train": "a", "format": "alpaca", "columns": {"question": "q"}},
     r"data.columns: 'question' is not a field of format alpaca \(its fields: instruction, input, output, system\)"),
    ({"train": "a", "columns": {"question": "q"}}, "'question' is not a field of format auto"),
    ({"train": "a", "columns": {"instruction": "q", "output": "q"}}, "data.columns maps two fields to the same column"),
    ({"train": "a", "overlong": "cut"}, "'truncate', 'drop' or 'error'"),
    ({"train": "a", "on_error": "ignore"}, "'error' or 'skip'"),
])
def test_refused(data, match):
    refused(match, **data)


@pytest.mark.parametrize(("fmt", "method", "problem"), [
    ("auto", "pretrain", None), ("auto", "sft", None), ("text", "pretrain", None),
    ("alpaca", "sft", None), ("sharegpt", "sft", None), ("messages", "sft", None),
    ("text", "sft", "method sft needs data.format messages, sharegpt or alpaca, not text"),
    ("alpaca", "pretrain", "method pretrain needs data.format text, not alpaca"),
    ("preference", "sft", "method sft needs data.format messages, sharegpt or alpaca, not preference"),
    ("prompt", "pretrain", "method pretrain needs data.format text, not prompt"),
])
def test_which_method_reads_which_format(fmt, method, problem):
    assert DataSection(train="a", format=fmt).method_problem(method) == problem


def test_the_format_registry_agrees_with_the_schema():
    choices = set(typing.get_args(DataSection.model_fields["format"].annotation))
    assert choices == {"auto", *KIND} == {"auto", *FORMAT_FIELDS} == {"auto", *PARSERS}
    assert all(f in FORMAT_FIELDS[fmt] for fmt, needs in DETECT for f in needs)
    assert {KIND[f] for f in METHOD_FORMATS["pretrain"]} == {"text"}
    assert {KIND[f] for f in METHOD_FORMATS["sft"]} == {"chat"}


def test_every_reason_is_documented():
    doc = DataSection.model_fields["on_error"].description
    assert [reason for reason in REASONS if reason not in doc] == []


def test_map_paths_maps_train_and_eval():
    data = DataSection(train=[{"path": "a", "weight": 2}, "b"], eval=["e"]).map_paths(lambda p: f"/x/{p}")
    assert data.train == [DataSource(path="/x/a", weight=2), DataSource(path="/x/b")] and data.eval == [DataSource(path="/x/e")]


# ----------------------------------------------------------------------------- preflight


def problems(tmp_path, method: str = "pretrain", **data) -> list[str]:
    job = tiny_pretrain_job(tmp_path, method=method)
    job["data"] = {"format": "text", "max_length": 32, **data}
    return problems_of(tmp_path, job)


def problems_of(tmp_path, job: dict) -> list[str]:
    """What loading the job refuses, one 'key: message' line each ([] when it loads); each names the line of
    the job file its key was written at."""
    path = write_job(tmp_path / "job.yaml", job)
    try:
        load(path)
    except JobError as err:
        assert all(re.fullmatch(rf"{re.escape(str(path))}:\d+", p.where) for p in err.problems), err.problems
        return [p.message for p in err.problems]
    return []


def test_folders_globs_and_every_file_type_pass(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("one\n")
    (tmp_path / "b.csv").write_text("text\ntwo\n")
    (tmp_path / "c.json").write_text('[{"text": "three"}]')
    train = [str(tmp_path / "docs"), {"path": str(tmp_path / "*.csv"), "weight": 2}, str(tmp_path / "c.json")]
    assert problems(tmp_path, train=train, eval=str(DATA / "stories_eval.jsonl")) == []


def test_each_missing_path_is_named(tmp_path):
    missing, nothing = tmp_path / "missing.jsonl", tmp_path / "none*.parquet"
    found = problems(tmp_path, train=[str(DATA / "stories.jsonl"), {"path": str(missing), "weight": 2}],
                     eval=[str(nothing)])
    assert found == [f"data.train[1]: file not found: {missing}",
                     f"data.eval[0]: no .jsonl, .json, .parquet, .csv or .txt file matches {nothing}"]


def test_txt_for_a_chat_format_is_refused_before_any_work(tmp_path):
    (tmp_path / "a.txt").write_text("hello\n")
    assert problems(tmp_path, "sft", train=str(tmp_path / "a.txt"), format="messages") == \
        [f"data.train[0]: a .txt file holds plain text, not format messages: {tmp_path / 'a.txt'}"]


def test_parquet_without_pyarrow_is_refused_before_any_work(tmp_path, monkeypatch):
    (tmp_path / "a.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert problems(tmp_path, train=str(tmp_path / "a.parquet")) == \
        ["data.train[0]: reading .parquet files needs pyarrow: pip install pyarrow"]


def _model_folder(tmp_path, config: dict):
    import json

    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _with_model(tmp_path, folder, **over) -> list[str]:
    job = tiny_pretrain_job(tmp_path, **over)
    job["model"] = {"path": str(folder)}
    return problems_of(tmp_path, job)


def test_a_sequence_longer_than_a_learned_position_table_is_refused(tmp_path):
    """GPT-2's positions are a learned table: data.max_length past n_positions would be an index error at
    the first step (a device-side assert on a GPU). Rotary models may run past max_position_embeddings."""
    gpt2 = _model_folder(tmp_path, {"model_type": "gpt2", "n_positions": 16})
    [problem] = _with_model(tmp_path, gpt2)  # the tiny job's data.max_length is 32
    assert problem.startswith("data.max_length: data.max_length is 32 tokens, but") and "n_positions" in problem
    assert _with_model(tmp_path, gpt2, data={"max_length": 16}) == []
    llama = _model_folder(tmp_path, {"model_type": "llama", "max_position_embeddings": 16})
    assert _with_model(tmp_path, llama) == []


def test_grpo_counts_the_completion_against_the_position_table(tmp_path):
    gpt2 = _model_folder(tmp_path, {"model_type": "gpt2", "n_positions": 64})
    grpo = {"type": "grpo", "max_new_tokens": 40, "rewards": [{"function": "trainhub.rewards:exact_match"}]}
    data = {"train": str(DATA / "arithmetic.jsonl"), "format": "prompt", "max_length": 32}
    [problem] = _with_model(tmp_path, gpt2, method=grpo, data=data, backend="trl")
    assert "data.max_length 32 + method.max_new_tokens 40 = 72 tokens" in problem
    assert _with_model(tmp_path, gpt2, method={**grpo, "max_new_tokens": 32}, data=data, backend="trl") == []
