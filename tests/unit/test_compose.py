"""Job files built from others (`extends`, presets), through `trainhub.jobfile.load`: what merges, what
wins, and that every error still names the file and line where its key was written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DATA
from trainhub.compose import PRESETS, compose
from trainhub.job import FullAdapter, LoraAdapter, QloraAdapter
from trainhub.jobfile import JobError, load

STORIES = DATA / "stories.jsonl"

BASE = f"""\
name: base
backend: native
model:
  init: {{hidden_size: 32, intermediate_size: 64, num_layers: 2, num_heads: 4}}
method: pretrain
data:
  train: [{STORIES}, {STORIES}]
  format: text
  max_length: 32
optim:
  lr: 0.01
  betas: [0.9, 0.99]
train:
  micro_batch_size: 4
  max_steps: 10
"""


def files(tmp_path: Path, **texts: str) -> dict[str, Path]:
    """Write each `name=text` as tmp_path/name (a `__` in the name is a folder: sub__job.yaml)."""
    out = {}
    for name, text in texts.items():
        path = tmp_path / name.replace("__", "/").replace("_yaml", ".yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        out[name] = path
    return out


def problems(path: Path, sets: list[str] | None = None) -> list[str]:
    with pytest.raises(JobError) as err:
        load(path, sets)
    return [str(p) for p in err.value.problems]


def test_later_wins_mappings_merge_lists_replace(tmp_path):
    f = files(tmp_path, base_yaml=BASE, job_yaml=f"extends: base.yaml\nname: child\noptim:\n  betas: [0.8, 0.9]\n"
                                                  f"data:\n  train: [{STORIES}]\ntrain: {{max_steps: 3}}\n")
    job = load(f["job_yaml"])
    assert job.name == "child"
    assert (job.optim.lr, job.optim.betas) == (0.01, (0.8, 0.9))  # lr kept from the base, betas replaced
    assert len(job.data.train) == 1  # a list replaces the base's list whole
    assert (job.data.max_length, job.train.micro_batch_size, job.train.max_steps) == (32, 4, 3)


def test_relative_extends_is_read_from_the_extending_files_folder(tmp_path, monkeypatch):
    f = files(tmp_path, common__base_yaml=BASE, exp__job_yaml="extends: ../common/base.yaml\nseed: 5\n")
    monkeypatch.chdir(tmp_path / "common")  # anywhere but exp/
    job = load(f["exp__job_yaml"])
    assert (job.name, job.seed) == ("base", 5)


def test_a_list_merges_in_order_then_the_file_then_set(tmp_path):
    f = files(tmp_path, base_yaml=BASE, a_yaml="seed: 1\ntrain: {max_steps: 4}\n", b_yaml="seed: 2\n",
              job_yaml="extends: [base.yaml, a.yaml, b.yaml]\ntrain: {micro_batch_size: 2}\n")
    job = load(f["job_yaml"])
    assert (job.seed, job.train.max_steps, job.train.micro_batch_size) == (2, 4, 2)
    assert load(f["job_yaml"], ["seed=9", "train.max_steps=7"]).train.max_steps == 7


def test_an_unknown_key_in_the_base_is_named_at_the_base_files_line(tmp_path):
    bad = BASE.replace("  max_steps: 10", "  max_step: 10")
    f = files(tmp_path, base_yaml=bad, job_yaml="extends: base.yaml\nname: child\n")
    line = bad.splitlines().index("  max_step: 10") + 1
    assert problems(f["job_yaml"]) == [f"{tmp_path / 'base.yaml'}:{line}: unknown key 'train.max_step'; "
                                       f"did you mean 'train.max_steps'?"]


def test_a_wrong_value_is_named_where_it_was_written_last(tmp_path):
    f = files(tmp_path, base_yaml=BASE, job_yaml="extends: base.yaml\n\ntrain:\n  max_steps: -1\n")
    [message] = problems(f["job_yaml"])
    assert message.startswith(f"{f['job_yaml']}:4: train.max_steps = -1")
    [message] = problems(f["job_yaml"], ["train.max_steps=0"])
    assert message.startswith("--set train.max_steps=0: train.max_steps = 0")


def test_a_missing_data_file_in_the_base_is_named_at_the_base_files_line(tmp_path):
    gone = tmp_path / "gone.jsonl"
    f = files(tmp_path, base_yaml=BASE.replace(f"[{STORIES}, {STORIES}]", str(gone)),
              job_yaml="extends: base.yaml\n")
    line = BASE.splitlines().index(f"  train: [{STORIES}, {STORIES}]") + 1
    assert problems(f["job_yaml"]) == [f"{tmp_path / 'base.yaml'}:{line}: data.train[0]: file not found: {gone}"]


def test_a_cycle_is_named_with_its_chain(tmp_path):
    f = files(tmp_path, a_yaml="extends: b.yaml\n", b_yaml="name: b\nextends: [c.yaml]\n", c_yaml="extends: a.yaml\n")
    [message] = problems(f["a_yaml"])
    assert message == f"{tmp_path / 'c.yaml'}:1: extends cycle: {f['a_yaml']} -> {tmp_path / 'b.yaml'} -> " \
                      f"{tmp_path / 'c.yaml'} -> {tmp_path / 'a.yaml'}"
    f = files(tmp_path, self_yaml="extends: self.yaml\n")
    assert problems(f["self_yaml"]) == [f"{f['self_yaml']}:1: extends cycle: {f['self_yaml']} -> {f['self_yaml']}"]


def test_the_same_base_twice_is_no_cycle(tmp_path):
    f = files(tmp_path, base_yaml=BASE, a_yaml="extends: base.yaml\ntrain: {max_steps: 3}\n",
              b_yaml="extends: base.yaml\n", job_yaml="extends: [a.yaml, b.yaml]\n")
    assert load(f["job_yaml"]).train.max_steps == 10  # b (the base again) comes after a


def test_a_missing_file_and_an_unknown_preset_are_named_at_the_extends_line(tmp_path):
    f = files(tmp_path, job_yaml=f"name: x\nextends:\n  - lroa\n  - nowhere.yaml\n{BASE}")
    [message] = problems(f["job_yaml"])
    assert message.startswith(f"{f['job_yaml']}:3: extends: unknown preset 'lroa'; did you mean 'lora'? presets: ")
    f = files(tmp_path, job_yaml="extends: [lora, nowhere.yaml]\n")
    assert problems(f["job_yaml"]) == [f"{f['job_yaml']}:1: extends: nowhere.yaml: file not found "
                                       f"({tmp_path / 'nowhere.yaml'}; a relative path is read from the folder of "
                                       f"the file that names it)"]
    f = files(tmp_path, job_yaml="extends: {a: 1}\n")
    assert "extends: expected a preset name or a .yaml path" in problems(f["job_yaml"])[0]


def test_a_preset_is_named_without_its_suffix(tmp_path):
    f = files(tmp_path, job_yaml=f"extends: lora\n{BASE}")
    job = load(f["job_yaml"])
    assert job.adapter == LoraAdapter(rank=16, alpha=32, dropout=0.0, targets="all-linear")
    raw, origins = compose(f["job_yaml"])
    assert str(origins[("adapter", "rank")]) == f"{PRESETS / 'lora.yaml'}:{_line(PRESETS / 'lora.yaml', 'rank')}"


def test_a_mapping_changes_fields_of_the_base_and_a_new_type_replaces_it(tmp_path):
    f = files(tmp_path, job_yaml=f"extends: lora\n{BASE}adapter: {{rank: 64}}\n")
    assert load(f["job_yaml"]).adapter == LoraAdapter(rank=64, alpha=32, dropout=0.0)
    f = files(tmp_path, job_yaml=f"extends: lora\n{BASE}adapter: full\n")
    assert load(f["job_yaml"]).adapter == FullAdapter()
    f = files(tmp_path, job_yaml=f"extends: lora\n{BASE}adapter: {{type: qlora, rank: 8}}\n")
    assert load(f["job_yaml"]).adapter == QloraAdapter(rank=8)  # not lora's alpha 32: another member, replaced


def test_a_shorthand_in_the_base_grows_into_a_mapping(tmp_path):
    f = files(tmp_path, base_yaml=BASE.replace("backend: native", "backend: nanogpt"),
              job_yaml="extends: base.yaml\nbackend: {compile: false}\n")
    job = load(f["job_yaml"])
    assert (job.backend.type, job.backend.compile) == ("nanogpt", False)


def _line(path: Path, key: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip().startswith(f"{key}:"))
