"""`--set a.b=value` overrides and the `--backend` argument, through `trainhub.jobfile.load`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DATA
from trainhub.job import AutoBackend, NativeBackend
from trainhub.jobfile import JobError, load

STORIES = DATA / "stories.jsonl"
CHAT = DATA / "chat.jsonl"
CHAT_EVAL = DATA / "chat_eval.jsonl"

# No optim section: the defaults apply until an override creates one.
BASE = f"""\
name: overrides
backend: native
model:
  path: example-org/tiny-model  # a hub id: not looked for on disk
method: sft
data:
  train: {CHAT}
  format: messages
train:
  max_steps: 10
"""


def job_file(tmp_path: Path, text: str = BASE) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def set_load(tmp_path: Path, *sets: str, backend: str | None = None, text: str = BASE):
    return load(job_file(tmp_path, text), list(sets), backend)


def set_problems(tmp_path: Path, *sets: str, backend: str | None = None, text: str = BASE) -> list[str]:
    with pytest.raises(JobError) as err:
        set_load(tmp_path, *sets, backend=backend, text=text)
    return [str(p) for p in err.value.problems]


def test_int_override(tmp_path):
    job = set_load(tmp_path, "train.max_steps=3", "seed=7")
    assert job.train.max_steps == 3 and type(job.train.max_steps) is int
    assert job.seed == 7


def test_float_overrides_including_exponent_without_a_dot(tmp_path):
    # YAML 1.1 reads `1e-4` as a string; the schema must still see the number 0.0001.
    job = set_load(tmp_path, "optim.lr=1e-4", "optim.eps=1.5e-7", "optim.weight_decay=0.05")
    assert job.optim.lr == 1e-4
    assert job.optim.eps == 1.5e-7
    assert job.optim.weight_decay == 0.05


def test_bool_and_null_overrides(tmp_path):
    job = set_load(tmp_path, "data.shuffle=false", "train.grad_checkpointing=true", "train.grad_clip=null")
    assert job.data.shuffle is False
    assert job.train.grad_checkpointing == "full"
    assert job.train.grad_clip is None


def test_list_overrides(tmp_path):
    job = set_load(tmp_path, "optim.betas=[0.8,0.9]", f"data.eval=[{CHAT_EVAL}, {CHAT}]",
                   "adapter.type=lora", "adapter.targets=[q_proj, v_proj]")
    assert job.optim.betas == (0.8, 0.9)
    assert [s.path for s in job.data.eval] == [str(CHAT_EVAL), str(CHAT)]
    assert job.adapter.targets == ["q_proj", "v_proj"]


def test_override_creates_nested_sections(tmp_path):
    assert "optim" not in BASE
    job = set_load(tmp_path, "schedule.decay=linear", "schedule.warmup_steps=5")
    assert job.schedule.decay == "linear"
    assert job.schedule.warmup_steps == 5
    assert job.schedule.min_lr_ratio == 0.1  # the rest stays default
    assert job.optim.lr == 3e-4


def test_shorthand_grows_into_a_mapping(tmp_path):
    job = set_load(tmp_path, "backend.compile=true", "method.train_on=all")
    assert job.backend == NativeBackend(compile=True)
    assert job.method.type == "sft" and job.method.train_on == "all"


def test_later_override_wins(tmp_path):
    assert set_load(tmp_path, "train.max_steps=3", "train.max_steps=5").train.max_steps == 5


def test_override_replaces_a_file_value(tmp_path):
    job = set_load(tmp_path, "name=renamed", "train.max_steps=null", "train.epochs=2")
    assert job.name == "renamed"
    assert job.train.max_steps is None and job.train.epochs == 2


def test_override_creating_an_unknown_key_is_an_unknown_key(tmp_path):
    found = set_problems(tmp_path, "train.max_step=3")
    assert len(found) == 1, found
    assert "unknown key 'train.max_step'; did you mean 'train.max_steps'?" in found[0]
    assert found[0].startswith("--set train.max_step=3:")  # pointed at the override, not at a file line


def test_override_creating_an_unknown_section(tmp_path):
    found = set_problems(tmp_path, "trian.max_steps=3")
    assert len(found) == 1, found
    assert "unknown key 'trian'; did you mean 'train'?" in found[0]


def test_override_with_a_bad_value_names_path_and_value(tmp_path):
    found = set_problems(tmp_path, "train.max_steps=0")
    assert len(found) == 1, found
    assert "train.max_steps = 0" in found[0] and "greater than or equal to 1" in found[0]


@pytest.mark.parametrize("item", ["foo", "=3", " =3"])
def test_malformed_item_is_an_error_naming_it(tmp_path, item):
    assert set_problems(tmp_path, item) == [f"--set {item}: expected KEY=VALUE, e.g. train.max_steps=10"]


def test_malformed_items_are_all_reported(tmp_path):
    found = set_problems(tmp_path, "foo", "train.max_steps=3", "bar")
    assert [p.split(":")[0] for p in found] == ["--set foo", "--set bar"]


def test_backend_argument_replaces_the_backend_type(tmp_path):
    text = BASE.replace("backend: native", "backend:\n  type: native\n  compile: true")
    assert set_load(tmp_path, backend="auto", text=text).backend == AutoBackend()
    # The same type keeps the file's settings.
    assert set_load(tmp_path, backend="native", text=text).backend == NativeBackend(compile=True)
    auto = BASE.replace("backend: native", "backend: auto")
    assert set_load(tmp_path, backend="native", text=auto).backend == NativeBackend(compile=False)
    no_backend = BASE.replace("backend: native\n", "")
    assert set_load(tmp_path, backend="native", text=no_backend).backend == NativeBackend(compile=False)


def test_backend_argument_unknown(tmp_path):
    [unknown] = set_problems(tmp_path, backend="nativ")
    assert "did you mean 'native'?" in unknown


def test_backend_argument_keeps_backend_overrides(tmp_path):
    auto = BASE.replace("backend: native", "backend: auto")
    job = set_load(tmp_path, "backend.compile=true", backend="native", text=auto)
    assert job.backend == NativeBackend(compile=True)
