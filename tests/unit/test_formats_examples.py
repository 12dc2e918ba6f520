"""What load_examples makes of a split's records: text blocks, conversations truncated, dropped or
refused when over-long, and every count on the way; the notes on what format auto decided.

Token counts are by hand with a byte-level tokenizer that has no merges: every ASCII character
is one token, EOS (<|im_end|>) is id 1 and padding (<|pad|>) id 0.
"""

from __future__ import annotations

import json
import re

import pytest

from trainhub.data.batches import load_examples
from trainhub.data.chat import IGNORE
from trainhub.data.sources import DataError
from trainhub.data.tokenizer import train_bpe
from trainhub.job import DataSection


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


def turn(role: str, content) -> dict:
    return {"role": role, "content": content}


# ----------------------------------------------------------------------------- load_examples: text


def test_text_blocks_by_hand(tmp_path, tok):
    path = jsonl(tmp_path / "a.jsonl", {"text": "abcdefg"}, {"text": "hijklm"}, {"text": "no"})
    examples = load_examples(DataSection(train=path, format="text", max_length=8), tok, method="pretrain")
    # abcdefg<eos> hijklm<eos> no<eos> = 8 + 7 + 3 = 18 tokens: two blocks of 8, two tokens dropped.
    eos = tok.eos_token_id
    stream = ids_of(tok, "abcdefg") + [eos] + ids_of(tok, "hijklm") + [eos] + ids_of(tok, "n")
    assert examples.stats == {"files": 1, "records": 3, "documents": 3, "tokens": 18, "blocks": 2,
                              "tail_tokens_dropped": 2}
    assert [b.tolist() for b in examples.input_ids] == [stream[0:8], stream[8:16]]
    assert [b.tolist() for b in examples.labels] == [stream[0:8], stream[8:16]]


def test_text_shorter_than_one_block_is_an_error(tmp_path, tok):
    path = jsonl(tmp_path / "a.jsonl", {"text": "ab"})
    with pytest.raises(ValueError, match="3 tokens in all, fewer than one block of data.max_length=8"):
        load_examples(DataSection(train=path, max_length=8), tok, method="pretrain")


# ----------------------------------------------------------------------------- load_examples: conversations

# LONG renders to 28 tokens with the prompt ending at 21 and labels on 21..26 ("hello" + EOS);
# SHORT renders to 23 tokens: <|im_start|>user\na<|im_end|>\n (9) <|im_start|>assistant\n (11),
# labels on 20..21 ("b" + EOS), then "\n".
LONG = {"messages": [turn("user", "hi"), turn("assistant", "hello")]}
SHORT = {"messages": [turn("user", "a"), turn("assistant", "b")]}
READ = {"files": 1, "records": 2}


def sft(path: str, tok, split: str = "train", **data):
    return load_examples(DataSection(train=path, **data), tok, split=split, method="sft")


@pytest.mark.parametrize(("max_length", "stats", "lengths"), [
    (28, {"conversations": 2, "truncated": 0, "dropped_no_target_after_truncation": 0, "examples": 2}, [28, 23]),
    (27, {"conversations": 2, "truncated": 1, "dropped_no_target_after_truncation": 0, "examples": 2}, [27, 23]),
    (22, {"conversations": 2, "truncated": 2, "dropped_no_target_after_truncation": 0, "examples": 2}, [22, 22]),
    (21, {"conversations": 2, "truncated": 2, "dropped_no_target_after_truncation": 1, "examples": 1}, [21]),
])
def test_sft_truncation_counts(tmp_path, tok, max_length, stats, lengths):
    examples = sft(jsonl(tmp_path / "c.jsonl", LONG, SHORT), tok, max_length=max_length)
    assert examples.stats == {**READ, **stats}
    assert [len(x) for x in examples.input_ids] == lengths
    assert [len(x) for x in examples.labels] == lengths


def test_sft_truncated_labels_by_hand(tmp_path, tok):
    path = jsonl(tmp_path / "c.jsonl", LONG, SHORT)
    short = sft(path, tok, max_length=21).labels[0].tolist()
    assert short == [IGNORE] * 20 + ids_of(tok, "b")
    long = sft(path, tok, max_length=23).labels[0].tolist()
    assert long == [IGNORE] * 21 + ids_of(tok, "he")


def test_sft_overlong_drop(tmp_path, tok):
    examples = sft(jsonl(tmp_path / "c.jsonl", LONG, SHORT), tok, max_length=27, overlong="drop")
    assert examples.stats == {**READ, "conversations": 2, "dropped_overlong": 1,
                              "dropped_no_target_after_truncation": 0, "examples": 1}
    assert [len(x) for x in examples.input_ids] == [23]


def test_sft_overlong_error_names_the_record(tmp_path, tok):
    path = jsonl(tmp_path / "c.jsonl", SHORT, LONG)
    with pytest.raises(DataError, match="^" + re.escape(f"{path}:2: conversation is 28 tokens, over "
                                                        f"data.max_length=27 (data.overlong is error")):
        sft(path, tok, max_length=27, overlong="error")
    assert sft(path, tok, max_length=28, overlong="error").stats["examples"] == 2


def test_sft_with_nothing_left_is_an_error(tmp_path, tok):
    with pytest.raises(DataError, match="the train data has no conversation left with a target token"):
        sft(jsonl(tmp_path / "c.jsonl", LONG, SHORT), tok, max_length=20)


def test_load_examples_reports_what_auto_decided_once(tmp_path, tok):
    path = jsonl(tmp_path / "c.jsonl", *[{"instruction": "a", "output": "b"}] * 8)
    data, notes = DataSection(train=path, eval_fraction=0.25), ["CPU: fp32"]
    train = load_examples(data, tok, split="train", method="sft", notes=notes)
    held = load_examples(data, tok, split="eval", method="sft", notes=notes)
    assert notes == ["CPU: fp32", f"data.format auto: {path} read as alpaca, from fields instruction, output"]
    assert (len(train), len(held)) == (6, 2) and train.stats["held_out_for_eval"] == 2


def test_skipped_records_reach_the_stats(tmp_path, tok):
    path = jsonl(tmp_path / "c.jsonl", LONG, "{broken", {"messages": []}, SHORT)
    examples = sft(path, tok, on_error="skip", max_length=64)
    assert examples.stats == {"files": 1, "records": 4, "skipped_malformed_json": 1, "skipped_empty_conversation": 1,
                              "conversations": 2, "truncated": 0, "dropped_no_target_after_truncation": 0,
                              "examples": 2}
