"""Reading data files (errors name file:line), pretraining blocks, SFT truncation, and micro-batches.

Token counts are by hand with a byte-level tokenizer that has no merges: every ASCII character
is one token, EOS (<|im_end|>) is id 1 and padding (<|pad|>) id 0.
"""

from __future__ import annotations

import json
import re

import pytest
import torch

from trainhub.data.batches import Examples, Position, collate, count_targets, load_examples, micro_batches
from trainhub.data.chat import IGNORE
from trainhub.data.sources import DataError, read_conversations, read_texts
from trainhub.data.tokenizer import train_bpe


@pytest.fixture(scope="module")
def tok():
    return train_bpe(["no merges"], vocab_size=300, min_frequency=10**9)


def ids_of(tok, text: str) -> list[int]:
    out = tok.convert_tokens_to_ids(list(text))
    assert tok.unk_token_id not in out
    return out


def jsonl(path, *records) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return str(path)


def at(path, line: int) -> str:
    return "^" + re.escape(f"{path}:{line}: ")


def turn(role: str, content) -> dict:
    return {"role": role, "content": content}


CHAT_OK = {"messages": [turn("user", "hi"), turn("assistant", "hello")]}

# ----------------------------------------------------------------------------- errors name file:line


def test_malformed_json_line(tmp_path):
    path = jsonl(tmp_path / "a.jsonl", {"text": "fine"}, "", '{"text": "unterminated')
    with pytest.raises(DataError, match=at(path, 3) + "malformed JSON"):
        list(read_texts([path]))


def test_json_that_is_not_an_object(tmp_path):
    path = jsonl(tmp_path / "a.jsonl", {"text": "fine"}, '["text"]')
    with pytest.raises(DataError, match=at(path, 2) + "expected a JSON object, got list"):
        list(read_texts([path]))


def test_text_record_without_text(tmp_path):
    path = jsonl(tmp_path / "a.jsonl", {"text": "one"}, {"text": "two"}, {"txt": "three"})
    with pytest.raises(DataError, match=at(path, 3) + r"expected a string field 'text' .*\['txt'\]"):
        list(read_texts([path]))


def test_text_record_with_non_string_text(tmp_path):
    path = jsonl(tmp_path / "a.jsonl", {"text": 5})
    with pytest.raises(DataError, match=at(path, 1) + "expected a string field 'text'"):
        list(read_texts([path]))


def test_messages_with_a_bad_role(tmp_path):
    path = jsonl(tmp_path / "c.jsonl", CHAT_OK, {"messages": [turn("user", "hi"), turn("bot", "hello")]})
    with pytest.raises(DataError, match=at(path, 2) + r"messages\[1\] needs a role in"):
        list(read_conversations([path]))


def test_messages_with_non_string_content(tmp_path):
    path = jsonl(tmp_path / "c.jsonl", {"messages": [turn("user", ["hi"]), turn("assistant", "hello")]})
    with pytest.raises(DataError, match=at(path, 1) + r"messages\[0\] needs a role in .* and a string content"):
        list(read_conversations([path]))


def test_messages_without_an_assistant_turn(tmp_path):
    path = jsonl(tmp_path / "c.jsonl", CHAT_OK, CHAT_OK, {"messages": [turn("system", "s"), turn("user", "hi")]})
    with pytest.raises(DataError, match=at(path, 3) + "conversation has no assistant turn"):
        list(read_conversations([path]))


@pytest.mark.parametrize("record", [{"messages": []}, {"text": "a"}, {"messages": "hi"}])
def test_record_without_a_messages_list(tmp_path, record):
    path = jsonl(tmp_path / "c.jsonl", record)
    with pytest.raises(DataError, match=at(path, 1) + "expected a non-empty list field 'messages'"):
        list(read_conversations([path]))


def test_messages_from_a_txt_file_refused(tmp_path):
    path = tmp_path / "c.txt"
    path.write_text("hello\n")
    with pytest.raises(DataError, match="format messages needs .jsonl files"):
        list(read_conversations([str(path)]))


def test_conversations_carry_their_location(tmp_path):
    path = jsonl(tmp_path / "c.jsonl", CHAT_OK, "", CHAT_OK)
    assert [where for where, _ in read_conversations([path])] == [f"{path}:1", f"{path}:3"]


# ----------------------------------------------------------------------------- text


def test_txt_documents_split_on_blank_lines(tmp_path):
    path = tmp_path / "docs.txt"
    path.write_text("\n\none\ntwo\n\n\nthree\n   \nfour  \nfive\n")
    assert list(read_texts([str(path)])) == ["one\ntwo", "three", "four  \nfive"]


def test_texts_from_several_files_in_order_blank_texts_skipped(tmp_path):
    a = jsonl(tmp_path / "a.jsonl", {"text": "x"}, {"text": "  "}, {"text": "y"})
    b = tmp_path / "b.txt"
    b.write_text("z\n")
    assert list(read_texts([a, str(b)])) == ["x", "y", "z"]


def test_text_blocks_by_hand(tmp_path, tok):
    path = jsonl(tmp_path / "a.jsonl", {"text": "abcde"}, {"text": "fgh"}, {"text": "ij"})
    examples = load_examples([path], "text", tok, max_length=4)
    # abcde<eos> fgh<eos> ij<eos> = 6 + 4 + 3 = 13 tokens: three blocks of 4, one token (the last EOS) dropped.
    eos = tok.eos_token_id
    stream = ids_of(tok, "abcde") + [eos] + ids_of(tok, "fgh") + [eos] + ids_of(tok, "ij")
    assert examples.stats == {"documents": 3, "tokens": 13, "blocks": 3, "tail_tokens_dropped": 1}
    assert [b.tolist() for b in examples.input_ids] == [stream[0:4], stream[4:8], stream[8:12]]
    assert [b.tolist() for b in examples.labels] == [stream[0:4], stream[4:8], stream[8:12]]


def test_text_shorter_than_one_block_is_an_error(tmp_path, tok):
    path = jsonl(tmp_path / "a.jsonl", {"text": "ab"})
    with pytest.raises(ValueError, match="3 tokens in all, fewer than one block of data.max_length=8"):
        load_examples([path], "text", tok, max_length=8)


# ----------------------------------------------------------------------------- SFT truncation

# LONG renders to 28 tokens with the prompt ending at 21 and labels on 21..26 ("hello" + EOS);
# SHORT renders to 23 tokens: <|im_start|>user\na<|im_end|>\n (9) <|im_start|>assistant\n (11),
# labels on 20..21 ("b" + EOS), then "\n".
LONG = {"messages": [turn("user", "hi"), turn("assistant", "hello")]}
SHORT = {"messages": [turn("user", "a"), turn("assistant", "b")]}


@pytest.mark.parametrize(("max_length", "stats", "lengths"), [
    (28, {"conversations": 2, "truncated": 0, "dropped_no_target_after_truncation": 0, "examples": 2}, [28, 23]),
    (27, {"conversations": 2, "truncated": 1, "dropped_no_target_after_truncation": 0, "examples": 2}, [27, 23]),
    (22, {"conversations": 2, "truncated": 2, "dropped_no_target_after_truncation": 0, "examples": 2}, [22, 22]),
    (21, {"conversations": 2, "truncated": 2, "dropped_no_target_after_truncation": 1, "examples": 1}, [21]),
])
def test_sft_truncation_counts(tmp_path, tok, max_length, stats, lengths):
    path = jsonl(tmp_path / "c.jsonl", LONG, SHORT)
    examples = load_examples([path], "messages", tok, max_length=max_length)
    assert examples.stats == stats
    assert [len(x) for x in examples.input_ids] == lengths
    assert [len(x) for x in examples.labels] == lengths


def test_sft_truncated_labels_by_hand(tmp_path, tok):
    path = jsonl(tmp_path / "c.jsonl", LONG, SHORT)
    short = load_examples([path], "messages", tok, max_length=21).labels[0].tolist()
    assert short == [IGNORE] * 20 + ids_of(tok, "b")
    long = load_examples([path], "messages", tok, max_length=23).labels[0].tolist()
    assert long == [IGNORE] * 21 + ids_of(tok, "he")


def test_sft_with_nothing_left_is_an_error(tmp_path, tok):
    path = jsonl(tmp_path / "c.jsonl", LONG, SHORT)
    with pytest.raises(ValueError, match="no conversation left with a target token"):
        load_examples([path], "messages", tok, max_length=20)


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
