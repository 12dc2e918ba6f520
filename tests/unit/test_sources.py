"""Sources: folders and globs, mixture weights and the eval split, all seeded and counted; micro-batches.

What load_examples makes of the records (blocks, truncation, overlong) is in test_formats_examples.py.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from trainhub.data.batches import Examples, Position, collate, count_targets, micro_batches
from trainhub.data.chat import IGNORE
from trainhub.data.sources import DataError, load_records, read_conversations, read_texts, training_texts
from trainhub.job import DataSection


def jsonl(path, *records) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return str(path)


def texts(path, prefix: str, n: int) -> str:
    return jsonl(path, *({"text": f"{prefix}{i}"} for i in range(n)))


def turn(role: str, content) -> dict:
    return {"role": role, "content": content}


def train_texts(seed: int = 0, **data) -> list[str]:
    return [r.text for r in load_records(DataSection(**data), "train", seed).items]


# ----------------------------------------------------------------------------- folders and globs


def test_a_folder_is_its_supported_files_sorted_not_recursive(tmp_path):
    texts(tmp_path / "b.jsonl", "b", 1)
    texts(tmp_path / "a.jsonl", "a", 1)
    (tmp_path / "c.txt").write_text("c0\n")
    (tmp_path / "README.md").write_text("not data")
    (tmp_path / ".hidden.jsonl").write_text('{"text": "hidden"}\n')
    (tmp_path / "test").mkdir()
    texts(tmp_path / "test" / "t.jsonl", "t", 1)
    got = load_records(DataSection(train=str(tmp_path)), "train", seed=0)
    assert [r.text for r in got.items] == ["a0", "b0", "c0"]
    assert got.stats == {"files": 3, "records": 3}


def test_a_glob_is_its_matches_sorted_and_double_star_recurses(tmp_path):
    for name in ("s2", "s1", "sub/s3"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        texts(tmp_path / f"{name}.jsonl", name, 1)
    assert train_texts(train=str(tmp_path / "s*.jsonl")) == ["s10", "s20"]
    assert train_texts(train=str(tmp_path / "**" / "*.jsonl")) == ["s10", "s20", "sub/s30"]


@pytest.mark.parametrize(("name", "message"), [
    ("missing.jsonl", "file not found: {p}"),
    ("nothing*.jsonl", "no .jsonl, .json, .parquet, .csv or .txt file matches {p}"),
    ("empty", "folder holds no .jsonl, .json, .parquet, .csv or .txt file: {p}"),
    ("notes.md", "unsupported file type '.md' (use .jsonl, .json, .parquet, .csv or .txt): {p}"),
])
def test_a_path_that_names_no_data_is_an_error(tmp_path, name, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.md").write_text("x")
    path = str(tmp_path / name)
    with pytest.raises(DataError, match="^" + re.escape(message.format(p=path)) + "$"):
        load_records(DataSection(train=path), "train", seed=0)


# ----------------------------------------------------------------------------- mixture weights


def test_weights_scale_each_source_by_its_own_size(tmp_path):
    a, b = texts(tmp_path / "a.jsonl", "a", 4), texts(tmp_path / "b.jsonl", "b", 6)
    data = DataSection(train=[{"path": a, "weight": 2.0}, {"path": b, "weight": 0.5}])
    got = load_records(data, "train", seed=0)
    drawn = [r.text for r in got.items]
    assert drawn[:8] == ["a0", "a1", "a2", "a3"] * 2  # weight 2: every record twice
    sample = drawn[8:]  # weight 0.5 of 6: three distinct records, in file order
    assert len(sample) == 3 and len(set(sample)) == 3 and set(sample) <= {f"b{i}" for i in range(6)}
    assert sample == sorted(sample)
    assert got.stats == {"files": 2, "records": 10, "source0_records": 4, "source0_drawn": 8,
                         "source1_records": 6, "source1_drawn": 3}


def test_a_fractional_weight_is_whole_copies_plus_a_seeded_sample(tmp_path):
    a = texts(tmp_path / "a.jsonl", "a", 4)
    drawn = train_texts(train=[{"path": a, "weight": 1.5}])  # round(1.5 * 4) = 6: all once, 2 more
    assert drawn[:4] == ["a0", "a1", "a2", "a3"] and len(drawn) == 6 and len(set(drawn[4:])) == 2
    assert len(train_texts(train=[{"path": a, "weight": 0.625}])) == 3  # 2.5 rounds half up
    assert len(train_texts(train=[{"path": a, "weight": 0.1}])) == 0  # 0.4 rounds to nothing


def test_weights_are_deterministic_with_the_seed(tmp_path):
    b = texts(tmp_path / "b.jsonl", "b", 20)
    source = [{"path": b, "weight": 0.5}]
    assert train_texts(3, train=source) == train_texts(3, train=source)
    assert len({tuple(train_texts(seed, train=source)) for seed in range(4)}) > 1


def test_one_unweighted_source_has_no_per_source_counts(tmp_path):
    a = texts(tmp_path / "a.jsonl", "a", 3)
    assert load_records(DataSection(train=a), "train", 0).stats == {"files": 1, "records": 3}


# ----------------------------------------------------------------------------- eval_fraction


def test_eval_fraction_holds_out_part_of_each_source_before_weights(tmp_path):
    a, b = texts(tmp_path / "a.jsonl", "a", 8), texts(tmp_path / "b.jsonl", "b", 4)
    data = DataSection(train=[{"path": a, "weight": 2.0}, b], eval_fraction=0.25)
    train = load_records(data, "train", seed=0)
    held = load_records(data, "eval", seed=0)
    eval_texts = [r.text for r in held.items]
    # round(0.25 * 8) = 2 of a and round(0.25 * 4) = 1 of b, each in file order
    assert [t[0] for t in eval_texts] == ["a", "a", "b"] and eval_texts == sorted(eval_texts)
    train_texts_ = [r.text for r in train.items]
    assert not set(eval_texts) & set(train_texts_)  # a record repeated by its weight stays on one side
    assert set(eval_texts) | set(train_texts_) == {f"a{i}" for i in range(8)} | {f"b{i}" for i in range(4)}
    assert len(train_texts_) == 6 * 2 + 3
    assert train.stats == {"files": 2, "records": 12, "held_out_for_eval": 3, "source0_records": 6,
                           "source0_drawn": 12, "source1_records": 3, "source1_drawn": 3}
    assert held.stats == {"files": 2, "records": 12, "held_out_for_eval": 3}
    # every record read is accounted for
    assert train.stats["records"] == train.stats["held_out_for_eval"] + 6 + 3


def test_eval_fraction_is_deterministic_with_the_seed(tmp_path):
    a = texts(tmp_path / "a.jsonl", "a", 40)
    data = DataSection(train=a, eval_fraction=0.1)
    runs = {seed: [r.text for r in load_records(data, "eval", seed).items] for seed in (0, 1, 2)}
    assert len(runs[0]) == 4 and [r.text for r in load_records(data, "eval", 0).items] == runs[0]
    assert len({tuple(v) for v in runs.values()}) > 1


def test_eval_fraction_that_holds_out_nothing_is_an_error(tmp_path):
    a = texts(tmp_path / "a.jsonl", "a", 5)
    with pytest.raises(DataError, match=r"data.eval_fraction=0.05 holds out no record of the 5 training records"):
        load_records(DataSection(train=a, eval_fraction=0.05), "eval", seed=0)


def test_an_eval_set_is_read_unweighted(tmp_path):
    a, e = texts(tmp_path / "a.jsonl", "a", 2), texts(tmp_path / "e.jsonl", "e", 3)
    got = load_records(DataSection(train={"path": a, "weight": 3}, eval=e), "eval", seed=0)
    assert [r.text for r in got.items] == ["e0", "e1", "e2"] and got.stats == {"files": 1, "records": 3}


# ----------------------------------------------------------------------------- plain readers


def test_plain_readers_and_the_tokenizer_corpus(tmp_path):
    t = jsonl(tmp_path / "t.jsonl", {"text": "x"}, {"text": ""}, {"text": "y"})
    c = jsonl(tmp_path / "c.jsonl", {"instruction": "Hi", "output": "Hello"})
    assert list(read_texts([t])) == ["x", "y"]
    assert list(read_conversations([c])) == [(f"{c}:1", [turn("user", "Hi"), turn("assistant", "Hello")])]
    assert list(training_texts(DataSection(train={"path": c, "weight": 2}), seed=0)) == ["Hi", "Hello"] * 2


# ----------------------------------------------------------------------------- micro-batches


def numbered(n: int) -> Examples:
    """Example i is [100 + i] * (1 + i % 3): its first token says which it is; lengths vary."""
    ids = [torch.full((1 + i % 3,), 100 + i, dtype=torch.long) for i in range(n)]
    return Examples(ids, [x.clone() for x in ids])


def take(examples: Examples, n: int, *, seed: int = 0, batch_size: int = 4, shuffle: bool = True,
         position: Position | None = None) -> list[dict]:
    it = micro_batches(examples, batch_size, seed=seed, shuffle=shuffle, pad_id=0, position=position or Position())
    return [next(it) for _ in range(n)]


def which(batch: dict) -> list[int]:
    return [int(x) - 100 for x in batch["input_ids"][:, 0]]


def test_micro_batches_are_deterministic_per_seed():
    examples = numbered(12)
    a, b, c = take(examples, 6, seed=3), take(examples, 6, seed=3), take(examples, 6, seed=4)
    for x, y in zip(a, b, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in ("input_ids", "attention_mask", "labels"))
    assert [which(x) for x in a] != [which(x) for x in c]


def test_each_example_once_per_epoch():
    batches = take(numbered(12), 6)  # two epochs of three batches
    first = [i for b in batches[:3] for i in which(b)]
    second = [i for b in batches[3:] for i in which(b)]
    assert sorted(first) == list(range(12))
    assert sorted(second) == list(range(12))
    assert first != second  # a new order each epoch
    assert first != list(range(12))  # shuffled


def test_incomplete_last_batch_is_skipped():
    batches = take(numbered(10), 4)  # 10 examples, batches of 4: two per epoch
    first, second = [i for b in batches[:2] for i in which(b)], [i for b in batches[2:] for i in which(b)]
    assert len(set(first)) == 8 and len(set(second)) == 8


def test_no_shuffle_is_file_order():
    assert [which(b) for b in take(numbered(8), 4, shuffle=False)] == [[0, 1, 2, 3], [4, 5, 6, 7]] * 2


def test_resuming_from_a_position_continues_the_same_stream():
    examples = numbered(12)
    whole = take(examples, 7, seed=1)
    position = Position(epoch=0, index=8)
    resumed = take(examples, 5, seed=1, position=position)
    assert [which(b) for b in resumed] == [which(b) for b in whole[2:]]
    # 1 batch left in epoch 0, 3 in epoch 1, 1 in epoch 2: consumed up to epoch 2, index 4.
    assert (position.epoch, position.index) == (2, 4)


def test_right_padding_by_hand():
    examples = Examples([torch.tensor([5, 6, 7]), torch.tensor([8])],
                        [torch.tensor([IGNORE, 6, 7]), torch.tensor([8])])
    [batch] = take(examples, 1, batch_size=2, shuffle=False)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, 6, 7], [8, IGNORE, IGNORE]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    # Targets after the shift: row 0 predicts 6 and 7; row 1 has none.
    assert count_targets(batch) == 2


def test_pad_id_is_used():
    examples = Examples([torch.tensor([5, 6]), torch.tensor([8])], [torch.tensor([5, 6]), torch.tensor([8])])
    batch = collate(examples, [1, 0], pad_id=99)
    assert batch["input_ids"].tolist() == [[8, 99], [5, 6]]
    assert batch["labels"].tolist() == [[8, IGNORE], [5, 6]]
    assert batch["attention_mask"].tolist() == [[1, 0], [1, 1]]


def test_fewer_examples_than_a_batch_is_an_error():
    with pytest.raises(ValueError, match="3 training examples, fewer than one micro-batch of 4"):
        take(numbered(3), 1)
