"""Hugging Face datasets as sources (`{hf: NAME, ...}`): a local dataset folder, a save_to_disk
folder, streaming with take, locations of bad rows, the cache key, and what the schema refuses.
No network: the Hub path is checked offline, where a dataset that is not cached is a clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from tests.conftest import ROOT
from trainhub.data.dataset import cache_key
from trainhub.data.sources import DataError, load_records
from trainhub.data.sources_hf import fingerprint
from trainhub.data.tokenizer import train_bpe
from trainhub.job import DataSection, DataSource, Job
from trainhub.jobfile import preflight

datasets = pytest.importorskip("datasets")


def chat(i: int) -> dict:
    return {"messages": [{"role": "user", "content": f"What is {i} plus 1?"},
                         {"role": "assistant", "content": f"{i} plus 1 is {i + 1}."}]}


@pytest.fixture
def repo(tmp_path):
    """A dataset folder laid out as a Hub repository holds one: a file per split."""
    folder = tmp_path / "arith"
    folder.mkdir()
    for split, n in (("train", 10), ("test", 3)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(chat(i)) + "\n" for i in range(n)))
    return folder


def test_a_local_dataset_folder_reads_like_files(repo):
    data = DataSection(train=[{"hf": str(repo)}], eval=[{"hf": str(repo), "split": "test"}], format="auto")
    train = load_records(data, "train", 0, "sft")
    assert len(train.items) == 10 and train.stats["hf_sources"] == 1 and train.stats["records"] == 10
    assert train.items[0].messages[1]["content"] == "0 plus 1 is 1."
    assert train.items[3].where == f"hf:{repo}[train] row 3"
    assert train.notes == [f"data.format auto: hf:{repo}[train] read as messages, from fields messages"]
    assert len(load_records(data, "eval", 0, "sft").items) == 3


def test_a_save_to_disk_folder_and_its_splits(tmp_path):
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list([chat(i) for i in range(6)])})
    dd.save_to_disk(str(tmp_path / "saved"))
    data = DataSection(train=[{"hf": str(tmp_path / "saved")}])
    assert len(load_records(data, "train", 0, "sft").items) == 6
    with pytest.raises(DataError, match=r"\[validation\]: no split 'validation'; the folder has train"):
        load_records(DataSection(train=[{"hf": str(tmp_path / "saved"), "split": "validation"}]), "train", 0, "sft")


def test_streaming_with_take_reads_the_first_rows(repo):
    data = DataSection(train=[{"hf": str(repo), "streaming": True, "take": 4}])
    got = load_records(data, "train", 0, "sft").items
    assert [r.messages[0]["content"] for r in got] == [f"What is {i} plus 1?" for i in range(4)]
    assert load_records(DataSection(train=[{"hf": str(repo), "take": 2}]), "train", 0, "sft").stats["records"] == 2


def test_a_bad_row_is_named_by_its_row(repo):
    lines = (repo / "train.jsonl").read_text().splitlines()
    lines[5] = json.dumps({"messages": [{"role": "user", "content": "no answer"}]})
    (repo / "train.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=rf"hf:{repo}\[train\] row 5: .*assistant"):
        load_records(DataSection(train=[{"hf": str(repo)}]), "train", 0, "sft")
    skipped = load_records(DataSection(train=[{"hf": str(repo)}], on_error="skip"), "train", 0, "sft")
    assert len(skipped.items) == 9 and skipped.stats["skipped_no_assistant_turn"] == 1


def test_the_cache_key_follows_the_dataset_content(repo, tmp_path):
    tok = train_bpe(["What is 1 plus 1?"], vocab_size=300)
    job = Job.model_validate({"name": "k", "model": {"path": str(tmp_path)}, "method": "sft",
                              "data": {"train": [{"hf": str(repo)}]}, "train": {"max_steps": 1}})
    before = cache_key(job, tok, "assistant")
    assert before is not None and cache_key(job, tok, "assistant") == before
    (repo / "train.jsonl").write_text((repo / "train.jsonl").read_text().replace("plus", "and"))
    assert cache_key(job, tok, "assistant") != before
    # a prepared Hub-style dataset is keyed on the fingerprint datasets gives it; a Hub stream has none
    assert fingerprint(DataSource(hf=str(repo), streaming=True)) is not None


@pytest.mark.parametrize(("source", "match"), [
    ({"path": "a.jsonl", "hf": "org/name"}, "either path .* or hf"),
    ({}, "either path .* or hf"),
    ({"path": "a.jsonl", "split": "test", "take": 3}, "split, take apply to hf sources only, not to path a.jsonl"),
    ({"hf": "org/name", "take": 0}, "greater than or equal to 1"),
])
def test_the_schema_refuses(source, match):
    with pytest.raises(ValidationError, match=match):
        DataSource(**source)


def test_eval_sources_take_no_weight():
    with pytest.raises(ValidationError, match="data.eval sources take no weight"):
        DataSection(train="a", eval=[{"hf": "org/name", "split": "test", "weight": 2}])


def test_preflight_names_a_missing_local_dataset_folder(tmp_path):
    job = Job.model_validate({"name": "p", "model": {"path": str(tmp_path)}, "method": "sft",
                              "data": {"train": [{"hf": str(tmp_path / "nowhere")}]}, "train": {"max_steps": 1}})
    assert [str(p) for p in preflight(job)] == [f"data.train[0]: dataset folder not found: {tmp_path / 'nowhere'}"]


@pytest.mark.slow  # a fresh interpreter imports datasets (7-20 s on 2 cores)
def test_a_hub_name_offline_and_not_cached_is_a_clear_error(tmp_path):
    code = ("from trainhub.data.sources import load_records; from trainhub.job import DataSection\n"
            "load_records(DataSection(train=[{'hf': 'nobody-here/no-such-dataset'}]), 'train', 0, 'sft')")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": str(ROOT / "backend")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode != 0
    assert "hf:nobody-here/no-such-dataset[train]: cannot load with datasets" in out.stderr
    assert "a Hub dataset must already be in the datasets cache" in out.stderr
