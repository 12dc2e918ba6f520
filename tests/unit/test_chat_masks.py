"""Chat encoding: the loss falls on each assistant answer and its <|im_end|>, nothing else.

Two tokenizers: one BPE trained on the shipped chat data (as a job with `tokenizer: train` gets),
and a byte-level one with no merges (min_frequency too high to merge anything), where every
ASCII character is one token, so label positions can be counted by hand.
"""

from __future__ import annotations

import copy
import json

import pytest

from tests.conftest import DATA
from trainhub.data.chat import IGNORE, TemplateError, encode_conversation, encode_conversations
from trainhub.data.tokenizer import EOS, IM_START, PAD, train_bpe

SINGLE = [{"role": "user", "content": "What colour is Snowball?"},
          {"role": "assistant", "content": "Snowball is white."}]
MULTI = [{"role": "user", "content": "Hi there."},
         {"role": "assistant", "content": "Hi! What would you like to know?"},
         {"role": "user", "content": "What colour is Snowball?"},
         {"role": "assistant", "content": "Snowball is white."}]
SYSTEM = [{"role": "system", "content": "Be helpful and brief."},
          {"role": "user", "content": "Where does Leo live?"},
          {"role": "assistant", "content": "Leo lives in Millbrook."},
          {"role": "user", "content": "Can you tell me what 11 times 7 is?"},
          {"role": "assistant", "content": "11 times 7 is 77."}]
# Content with leading/trailing spaces and a newline inside: the label span must not eat or add whitespace.
SPACES = [{"role": "user", "content": "  spaced  "},
          {"role": "assistant", "content": " two\nlines \n"}]


@pytest.fixture(scope="module")
def tok():
    lines = (DATA / "chat.jsonl").read_text().splitlines()[:300]
    texts = [m["content"] for line in lines for m in json.loads(line)["messages"]]
    return train_bpe(texts, vocab_size=500)


@pytest.fixture(scope="module")
def byte_tok():
    return train_bpe(["no merges"], vocab_size=300, min_frequency=10**9)


def chat_ids(tokenizer, messages) -> list[int]:
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False)
    return list(out["input_ids"] if isinstance(out, dict) else out)


def labelled_spans(tokenizer, ids: list[int], labels: list[int]) -> list[str]:
    """Each maximal run of labelled positions, decoded; labels must equal the ids they label."""
    spans, run = [], []
    for i, label in zip(ids, labels, strict=True):
        if label == IGNORE:
            if run:
                spans.append(run)
            run = []
        else:
            assert label == i
            run.append(label)
    if run:
        spans.append(run)
    return [tokenizer.decode(s, skip_special_tokens=False) for s in spans]


@pytest.mark.parametrize("messages", [SINGLE, MULTI, SYSTEM, SPACES], ids=["single", "multi", "system", "spaces"])
def test_labels_are_exactly_the_assistant_turns(tok, messages):
    ids, labels = encode_conversation(tok, messages)
    assert ids == chat_ids(tok, messages)
    assert len(labels) == len(ids)
    expected = [m["content"] + EOS for m in messages if m["role"] == "assistant"]
    assert labelled_spans(tok, ids, labels) == expected


def test_the_rendered_text_is_chatml(tok):
    ids, _ = encode_conversation(tok, SINGLE)
    assert tok.decode(ids, skip_special_tokens=False) == (
        "<|im_start|>user\nWhat colour is Snowball?<|im_end|>\n"
        "<|im_start|>assistant\nSnowball is white.<|im_end|>\n")


def test_label_positions_by_hand(byte_tok):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    ids, labels = encode_conversation(byte_tok, messages)
    # <|im_start|> "user\n" "hi" <|im_end|> "\n"  = 1 + 5 + 2 + 1 + 1 = 10 tokens
    # <|im_start|> "assistant\n"                  = 1 + 10           = 11 tokens (prompt ends at 21)
    # "hello" <|im_end|>                          = 5 + 1            = 6 labelled tokens (21..26)
    # "\n"                                        = 1 unlabelled     (27)
    assert len(ids) == 28
    assert [i for i, label in enumerate(labels) if label != IGNORE] == list(range(21, 27))
    assert labels[21:27] == byte_tok.convert_tokens_to_ids(list("hello")) + [byte_tok.eos_token_id]


def test_conversation_opening_with_the_assistant_is_refused(byte_tok, tmp_path):
    """No turn before it, so nothing locates the answer: the reader names the record, the encoder refuses."""
    from trainhub.data.sources import DataError, read_conversations

    bad = tmp_path / "c.jsonl"
    bad.write_text('{"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}]}\n')
    with pytest.raises(DataError, match=f"{bad}:1: conversation opens with an assistant turn"):
        list(read_conversations([str(bad)]))
    with pytest.raises(TemplateError):
        encode_conversation(byte_tok, [{"role": "assistant", "content": "hi"}])


def test_train_on_all_labels_every_token(tok):
    ids, labels = encode_conversation(tok, SYSTEM, train_on="all")
    assert ids == chat_ids(tok, SYSTEM)
    assert labels == ids


NO_EOS_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '\\n\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

# Prefixes the whole conversation with its length, so a shorter conversation is not a prefix of a longer one.
NOT_CONCATENATIVE_TEMPLATE = "{{ messages | length }}" + NO_EOS_TEMPLATE.replace("'\\n\\n'", "'<|im_end|>\\n'")


def test_template_without_eos_after_assistant_is_refused(tok):
    broken = copy.deepcopy(tok)
    broken.chat_template = NO_EOS_TEMPLATE
    with pytest.raises(TemplateError, match="does not close assistant turns with the EOS token"):
        encode_conversation(broken, SINGLE)
    # train_on=all does not need to find the turns.
    ids, labels = encode_conversation(broken, SINGLE, train_on="all")
    assert labels == ids


def test_template_that_is_not_a_concatenation_is_refused(tok):
    broken = copy.deepcopy(tok)
    broken.chat_template = NOT_CONCATENATIVE_TEMPLATE
    with pytest.raises(TemplateError, match="concatenation of its turns"):
        encode_conversation(broken, MULTI)


def test_trained_tokenizer_special_tokens(tok):
    assert len(tok) == 500
    # Special tokens come first, in this order: pad 0, eos 1, im_start 2.
    assert (tok.pad_token, tok.eos_token) == (PAD, EOS)
    assert (tok.pad_token_id, tok.eos_token_id, tok.convert_tokens_to_ids(IM_START)) == (0, 1, 2)
    assert tok.pad_token_id != tok.eos_token_id
    assert tok.bos_token is None
    assert tok.padding_side == "right"
    # A special token in text is one token, never split into bytes.
    assert tok("a<|im_end|>b", add_special_tokens=False)["input_ids"][1] == 1


def test_tokenizer_saves_and_reloads(tok, tmp_path):
    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path)
    back = AutoTokenizer.from_pretrained(tmp_path)
    text = "Leo lives in Millbrook. 11 times 7 is 77.\n  Snowball!"
    assert back(text, add_special_tokens=False)["input_ids"] == tok(text, add_special_tokens=False)["input_ids"]
    assert (back.pad_token_id, back.eos_token_id) == (0, 1)
    assert back.chat_template == tok.chat_template
    assert chat_ids(back, SYSTEM) == chat_ids(tok, SYSTEM)
    assert encode_conversation(back, SYSTEM) == encode_conversation(tok, SYSTEM)


def test_batched_encoding_equals_one_at_a_time(tok):
    """encode_conversations renders all texts, then tokenizes them in one call: same ids, same labels."""
    conversations = [SINGLE, MULTI, SYSTEM, SPACES, MULTI[:2]]
    for train_on in ("assistant", "all"):
        batched = encode_conversations(tok, conversations, train_on)
        assert batched == [encode_conversation(tok, c, train_on) for c in conversations]
        assert batched[0][0] == chat_ids(tok, SINGLE)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_worker_pool_changes_nothing_but_the_time(tok, monkeypatch, workers):
    """The loader spreads conversations over worker processes in chunks; the result is in order and identical."""
    import functools

    from trainhub.data import parallel

    monkeypatch.setattr(parallel, "MIN_ITEMS", 4)
    monkeypatch.setattr(parallel, "CHUNK", 3)
    monkeypatch.setenv("TRAINHUB_DATA_WORKERS", workers)
    conversations = [SINGLE, MULTI, SYSTEM, SPACES, MULTI[:2], SYSTEM[:3], SINGLE, MULTI]
    encode = functools.partial(encode_conversations, tok, train_on="assistant")
    assert parallel.map_chunks(encode, conversations) == [encode_conversation(tok, c) for c in conversations]


def test_a_template_error_in_a_worker_reaches_the_caller(monkeypatch):
    import functools

    from trainhub.data import parallel

    monkeypatch.setattr(parallel, "MIN_ITEMS", 2)
    monkeypatch.setattr(parallel, "CHUNK", 1)
    monkeypatch.setenv("TRAINHUB_DATA_WORKERS", "2")
    broken = train_bpe(["no merges"], vocab_size=300, min_frequency=10**9)
    broken.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"  # no EOS after a turn
    encode = functools.partial(encode_conversations, broken, train_on="assistant")
    with pytest.raises(TemplateError, match="EOS"):
        parallel.map_chunks(encode, [SINGLE, SINGLE, SINGLE])


def test_bad_worker_counts_are_refused(monkeypatch):
    from trainhub.data import parallel

    monkeypatch.setenv("TRAINHUB_DATA_WORKERS", "0")
    with pytest.raises(ValueError, match="TRAINHUB_DATA_WORKERS"):
        parallel.workers()
