"""The job schema through `trainhub.jobfile.load`: what a valid job becomes, and what each mistake says.

Job files are written as YAML text (not dumped from a dict) so the line of every key is known
from the text itself; each error test edits one line of VALID and checks the message names
that line, the key path, the value, and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT
from trainhub.job import SFT, AutoBackend, LoraAdapter, NativeBackend, Schedule
from trainhub.jobfile import JobError, load

STORIES = DATA / "stories.jsonl"
STORIES_EVAL = DATA / "stories_eval.jsonl"
CHAT = DATA / "chat.jsonl"

VALID = f"""\
name: schema-test
output_dir: runs/{{name}}
seed: 3
backend: native
model:
  init:
    hidden_size: 32
    intermediate_size: 64
    num_layers: 2
    num_heads: 4
    num_kv_heads: 2
    tokenizer:
      type: train
      vocab_size: 400
method: pretrain
data:
  train: {STORIES}
  eval: {STORIES_EVAL}
  format: text
  max_length: 32
optim:
  lr: 0.01
train:
  micro_batch_size: 4
  max_steps: 10
"""


def edit(text: str, old: str, new: str) -> str:
    """Replace the one line `old` (exact, whole line) with `new` (may be several lines, or empty)."""
    lines = text.splitlines()
    assert lines.count(old) == 1, f"{old!r} is not exactly one line of the job"
    i = lines.index(old)
    return "\n".join(lines[:i] + ([new] if new else []) + lines[i + 1:]) + "\n"


def line_of(text: str, line: str) -> int:
    return text.splitlines().index(line) + 1


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str, sets: list[str] | None = None, backend: str | None = None) -> list[str]:
    path = write(tmp_path, text)
    with pytest.raises(JobError) as err:
        load(path, sets, backend)
    return [str(p) for p in err.value.problems]


def only(tmp_path: Path, text: str) -> str:
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    return found[0]


# ----------------------------------------------------------------------------- a valid job


def test_valid_job_loads_with_absolute_paths_and_expanded_output_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    job = load(write(tmp_path, VALID))
    assert job.name == "schema-test"
    assert job.output_dir == str(tmp_path.resolve() / "runs" / "schema-test")
    assert [s.path for s in job.data.train] == [str(STORIES)]
    assert [s.path for s in job.data.eval] == [str(STORIES_EVAL)]
    assert job.backend == NativeBackend(compile=False)
    assert job.model.init.num_kv_heads == 2
    assert job.model.init.tokenizer.vocab_size == 400
    assert job.optim.lr == 0.01
    assert job.optim.betas == (0.9, 0.95)  # default
    assert job.schedule == Schedule(warmup_steps=0, decay="cosine", min_lr_ratio=0.1)
    assert job.train.max_steps == 10 and job.train.epochs is None


def test_relative_paths_resolve_from_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    text = edit(VALID, f"  train: {STORIES}", "  train: config/data/stories.jsonl")
    text = edit(text, "output_dir: runs/{name}", f"output_dir: {tmp_path}/out/{{name}}-x")
    job = load(write(tmp_path, text))
    assert [s.path for s in job.data.train] == [str(ROOT / "config" / "data" / "stories.jsonl")]
    assert job.output_dir == str(tmp_path.resolve() / "out" / "schema-test-x")


def test_string_shorthand_equals_the_mapping_form(tmp_path):
    short = edit(VALID, "method: pretrain", "method: sft\nadapter: lora")
    short = edit(edit(short, f"  train: {STORIES}", f"  train: {CHAT}"), f"  eval: {STORIES_EVAL}", "")
    short = edit(short, "  format: text", "  format: messages")
    long = edit(short, "backend: native", "backend:\n  type: native")
    long = edit(long, "method: sft", "method:\n  type: sft")
    long = edit(long, "adapter: lora", "adapter:\n  type: lora")
    job = load(write(tmp_path, short))
    assert job.backend == NativeBackend(compile=False)
    assert job.method == SFT(train_on="assistant")
    assert job.adapter == LoraAdapter(rank=16, alpha=32.0, dropout=0.0, targets="all-linear")
    assert [s.path for s in job.data.train] == [str(CHAT)] and job.data.eval == []
    assert load(write(tmp_path, long)) == job


def test_hash_is_stable_and_follows_values(tmp_path):
    path = write(tmp_path, VALID)
    first, second = load(path).hash(), load(path).hash()
    assert first == second
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    # Comments and layout are not part of the job; shorthand and mapping forms are the same job.
    write(tmp_path, "# a comment\n" + edit(VALID, "backend: native", "backend: {type: native}"))
    assert load(path).hash() == first
    write(tmp_path, VALID)
    assert load(path, ["seed=4"]).hash() != first
    assert load(path, ["optim.lr=0.02"]).hash() != first
    assert load(path, ["optim.lr=0.01"]).hash() == first


# ----------------------------------------------------------------------------- mistakes


def test_misspelt_key_names_file_line_and_suggests_the_key(tmp_path):
    text = edit(VALID, "  max_steps: 10", "  max_step: 10")
    message = only(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'job.yaml'}:{line_of(text, '  max_step: 10')}: ")
    assert "unknown key 'train.max_step'" in message
    assert "did you mean 'train.max_steps'?" in message


def test_key_in_the_wrong_section_says_where_it_belongs(tmp_path):
    text = edit(VALID, "  max_steps: 10", "  max_steps: 10\n  lr: 0.1")
    message = only(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'job.yaml'}:{line_of(text, '  lr: 0.1')}: ")
    assert "unknown key 'train.lr'" in message
    assert "belongs under optim" in message


def test_key_of_another_type_of_the_same_section_says_where_it_goes_for_this_type(tmp_path):
    """optim.betas is AdamW's; under optim.type muon, AdamW's half takes it as optim.adamw.betas."""
    text = edit(VALID, "optim:", "optim:\n  type: muon\n  betas: [0.9, 0.95]")
    message = only(tmp_path, text)
    assert "unknown key 'optim.betas'" in message
    assert "with this optim.type it belongs under optim.adamw (other optim.type values take it under optim" in message


def test_wrong_type_names_path_and_value(tmp_path):
    text = edit(VALID, "  max_steps: 10", "  max_steps: ten")
    message = only(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'job.yaml'}:{line_of(text, '  max_steps: ten')}: ")
    assert "train.max_steps = 'ten'" in message
    assert "integer" in message


def test_out_of_range_names_path_value_and_bound(tmp_path):
    text = edit(VALID, "  lr: 0.01", "  lr: -1")
    message = only(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'job.yaml'}:{line_of(text, '  lr: -1')}: ")
    assert "optim.lr = -1" in message
    assert "greater than 0" in message


def test_every_problem_is_reported_at_once(tmp_path):
    text = edit(edit(VALID, "  max_steps: 10", "  max_step: 10"), "  lr: 0.01", "  lr: -1")
    found = problems(tmp_path, text)
    assert len(found) == 2, found
    assert any("'train.max_step'" in p for p in found)
    assert any("optim.lr = -1" in p for p in found)


def test_invalid_yaml_names_the_file(tmp_path):
    message = only(tmp_path, edit(VALID, "  max_steps: 10", "  max_steps: [10"))
    assert message.startswith(f"{tmp_path / 'job.yaml'}:")
    assert "not valid YAML" in message


def test_missing_data_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "missing.jsonl"
    text = edit(VALID, f"  train: {STORIES}", f"  train: {missing}")
    message = only(tmp_path, text)
    assert message == f"{tmp_path / 'job.yaml'}:{line_of(text, f'  train: {missing}')}: data.train[0]: file not found: {missing}"


def test_missing_eval_file_names_the_path(tmp_path):
    missing = tmp_path / "gone.jsonl"
    text = edit(VALID, f"  eval: {STORIES_EVAL}", f"  eval: [{STORIES_EVAL}, {missing}]")
    message = only(tmp_path, text)
    assert message == f"{tmp_path / 'job.yaml'}:{line_of(text, f'  eval: [{STORIES_EVAL}, {missing}]')}: " \
                      f"data.eval[1]: file not found: {missing}"


@pytest.mark.parametrize("model", ["model: {}", "model:\n  dtype: bfloat16"])
def test_neither_model_path_nor_init_refused(tmp_path, model):
    start, end = VALID.index("model:\n"), VALID.index("method:")
    text = VALID[:start] + model + "\n" + VALID[end:]
    message = only(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'job.yaml'}:{line_of(text, model.splitlines()[0])}: ")
    assert "set exactly one of model.path (an existing model) and model.init (a new one)" in message


def test_both_model_path_and_full_init_refused(tmp_path):
    text = edit(VALID, "  init:", "  path: /some/model\n  init:")
    assert "set exactly one of model.path" in only(tmp_path, text)


@pytest.mark.parametrize("steps", ["  max_steps: 10\n  epochs: 1", ""])
def test_exactly_one_of_max_steps_and_epochs(tmp_path, steps):
    message = only(tmp_path, edit(VALID, "  max_steps: 10", steps))
    assert "set exactly one of train.max_steps and train.epochs" in message


def test_epochs_alone_is_valid(tmp_path):
    job = load(write(tmp_path, edit(VALID, "  max_steps: 10", "  epochs: 1.5")))
    assert job.train.epochs == 1.5 and job.train.max_steps is None


def test_sft_on_text_data_refused(tmp_path):
    message = only(tmp_path, edit(VALID, "method: pretrain", "method: sft"))
    assert "method sft needs data.format messages, sharegpt or alpaca, not text" in message


def test_pretrain_on_messages_refused(tmp_path):
    message = only(tmp_path, edit(VALID, "  format: text", "  format: messages"))
    assert "method pretrain needs data.format text, not messages" in message


def test_unknown_backend_suggests_the_closest(tmp_path):
    text = edit(VALID, "backend: native", "backend: nativ")
    message = only(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'job.yaml'}:{line_of(text, 'backend: nativ')}: ")
    assert "'nativ' is not one of auto, native" in message
    assert "did you mean 'native'?" in message


def test_unknown_method_suggests_the_closest(tmp_path):
    message = only(tmp_path, edit(VALID, "method: pretrain", "method: pretrian"))
    assert "did you mean 'pretrain'?" in message


def test_eval_every_without_eval_data_refused(tmp_path):
    text = edit(edit(VALID, f"  eval: {STORIES_EVAL}", ""), "  max_steps: 10", "  max_steps: 10\n  eval_every: 5")
    assert "train.eval_every is set but there is no eval data" in only(tmp_path, text)


def test_eval_every_with_eval_data_is_valid(tmp_path):
    job = load(write(tmp_path, edit(VALID, "  max_steps: 10", "  max_steps: 10\n  eval_every: 5")))
    assert job.train.eval_every == 5


def test_hidden_size_must_divide_by_heads(tmp_path):
    text = edit(VALID, "    hidden_size: 32", "    hidden_size: 30")
    message = only(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'job.yaml'}:{line_of(text, '  init:')}: ")
    assert "hidden_size 30 is not divisible by num_heads 4" in message


def test_heads_must_divide_by_kv_heads(tmp_path):
    message = only(tmp_path, edit(VALID, "    num_kv_heads: 2", "    num_kv_heads: 3"))
    assert "num_heads 4 is not divisible by num_kv_heads 3" in message


def test_unknown_key_in_a_union_member_names_the_user_path(tmp_path):
    text = VALID + "adapter:\n  type: lora\n  rnak: 4\n"
    message = only(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'job.yaml'}:{line_of(text, '  rnak: 4')}: ")
    assert "unknown key 'adapter.rnak'; did you mean 'adapter.rank'?" in message


def test_misspelt_key_under_model_init_suggests_the_key(tmp_path):
    text = edit(VALID, "    num_kv_heads: 2", "    num_kv_head: 2")
    message = only(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'job.yaml'}:{line_of(text, '    num_kv_head: 2')}: ")
    assert "unknown key 'model.init.num_kv_head'; did you mean 'model.init.num_kv_heads'?" in message


def test_misspelt_key_in_the_tokenizer_names_the_user_path(tmp_path):
    text = edit(VALID, "      vocab_size: 400", "      vocab_sise: 400")
    message = only(tmp_path, text)
    assert message.startswith(f"{tmp_path / 'job.yaml'}:{line_of(text, '      vocab_sise: 400')}: ")
    assert "unknown key 'model.init.tokenizer.vocab_sise'; did you mean 'model.init.tokenizer.vocab_size'?" in message


def test_backend_auto_is_the_default(tmp_path):
    job = load(write(tmp_path, edit(VALID, "backend: native", "")))
    assert job.backend == AutoBackend()


def test_hub_id_is_kept_and_a_local_model_folder_resolved(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    start, end = VALID.index("model:\n"), VALID.index("method:")
    hub = VALID[:start] + "model:\n  path: example-org/tiny-model\n" + VALID[end:]
    assert load(write(tmp_path, hub)).model.path == "example-org/tiny-model"
    (tmp_path / "models" / "mine").mkdir(parents=True)
    local = VALID[:start] + "model:\n  path: ./models/mine\n" + VALID[end:]
    assert load(write(tmp_path, local)).model.path == str(tmp_path.resolve() / "models" / "mine")
    missing = VALID[:start] + "model:\n  path: ./models/gone\n" + VALID[end:]
    assert only(tmp_path, missing) == f"{tmp_path / 'job.yaml'}:{line_of(missing, '  path: ./models/gone')}: " \
                                      f"model.path: model folder not found: {tmp_path.resolve() / 'models' / 'gone'}"
