"""Record formats one record at a time: what each becomes, each rule it can break, and detection.

Every expected value is written out by hand. Files, locations and counting are in test_sources.py
and test_formats_files.py; here the location is a made-up "f.jsonl:7".
"""

from __future__ import annotations

import pytest

from trainhub.data.formats import (
    KIND,
    REASONS,
    BadRecord,
    Chat,
    PreferencePair,
    PromptRecord,
    Text,
    detect,
    parse,
)

W = "f.jsonl:7"


def turn(role: str, content) -> dict:
    return {"role": role, "content": content}


def bad(fmt: str, record, reason: str, message: str, columns: dict | None = None) -> None:
    with pytest.raises(BadRecord, match=f"^{W}: {message}") as err:
        parse(fmt, record, W, columns or {})
    assert (err.value.where, err.value.reason) == (W, reason)


# ----------------------------------------------------------------------------- what each format becomes


def test_text():
    assert parse("text", {"text": "Once upon a time.", "id": 3}, W, {}) == Text(W, "Once upon a time.")


def test_messages_keep_extra_keys_and_drop_nulls():
    record = {"messages": [{"role": "user", "content": "hi", "name": None}, turn("assistant", "hello")]}
    assert parse("messages", record, W, {}) == Chat(W, [turn("user", "hi"), turn("assistant", "hello")])
    tool = {"messages": [turn("user", "x"), {"role": "assistant", "content": "", "tool_call_id": "c1"},
                         turn("tool", "42"), turn("assistant", "It is 42.")]}
    assert parse("messages", tool, W, {}).messages[1] == {"role": "assistant", "content": "", "tool_call_id": "c1"}


def test_sharegpt_becomes_messages():
    record = {"system": "Be brief.", "conversations": [
        {"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"},
        {"from": "user", "value": "weather?"}, {"from": "function_call", "value": '{"name": "w"}'},
        {"from": "observation", "value": "sunny"}, {"from": "assistant", "value": "Sunny."}]}
    assert parse("sharegpt", record, W, {}) == Chat(W, [
        turn("system", "Be brief."), turn("user", "2+2?"), turn("assistant", "4"), turn("user", "weather?"),
        turn("assistant", '{"name": "w"}'), turn("tool", "sunny"), turn("assistant", "Sunny.")])


@pytest.mark.parametrize(("record", "messages"), [
    ({"instruction": "Add.", "input": "2 and 3", "output": "5"}, [turn("user", "Add.\n2 and 3"), turn("assistant", "5")]),
    ({"instruction": "Say hi.", "input": "", "output": "Hi."}, [turn("user", "Say hi."), turn("assistant", "Hi.")]),
    ({"instruction": "Say hi.", "output": "Hi.", "system": "Be kind."},
     [turn("system", "Be kind."), turn("user", "Say hi."), turn("assistant", "Hi.")]),
    ({"instruction": "Say hi.", "input": None, "output": "Hi.", "system": ""},  # table nulls, empty cells
     [turn("user", "Say hi."), turn("assistant", "Hi.")]),
])
def test_alpaca_becomes_messages(record, messages):
    assert parse("alpaca", record, W, {}) == Chat(W, messages)


def test_preference_of_strings_and_of_messages():
    assert parse("preference", {"prompt": "2+2?", "chosen": "4", "rejected": "5"}, W, {}) == \
        PreferencePair(W, "2+2?", "4", "5")
    record = {"prompt": [turn("user", "2+2?")], "chosen": [turn("assistant", "4")],
              "rejected": [turn("assistant", "5")]}
    assert parse("preference", record, W, {}) == \
        PreferencePair(W, [turn("user", "2+2?")], [turn("assistant", "4")], [turn("assistant", "5")])


def test_prompt_keeps_the_answer_and_every_other_field():
    record = {"prompt": "2+2?", "answer": 4, "level": "easy", "tests": ["assert f() == 4"]}
    assert parse("prompt", record, W, {}) == PromptRecord(W, "2+2?", 4, {"level": "easy", "tests": ["assert f() == 4"]})
    assert parse("prompt", {"prompt": [turn("user", "2+2?")]}, W, {}) == PromptRecord(W, [turn("user", "2+2?")])


def test_columns_map_canonical_names_to_the_files():
    columns = {"instruction": "question", "output": "answer"}
    record = {"question": "Capital of France?", "answer": "Paris.", "output": "ignored"}
    assert parse("alpaca", record, W, columns).messages == [turn("user", "Capital of France?"), turn("assistant", "Paris.")]
    prompt = parse("prompt", {"q": "2+2?", "gold": "4", "id": 1}, W, {"prompt": "q", "answer": "gold"})
    assert prompt == PromptRecord(W, "2+2?", "4", {"id": 1})


# ----------------------------------------------------------------------------- every rule a record can break


@pytest.mark.parametrize("fmt", list(KIND))
def test_not_an_object(fmt):
    bad(fmt, ["text"], "not_an_object", "expected an object with fields, got list")


BAD = [
    ("text", {"txt": "a"}, "missing_field", r"missing field 'text'; the record has \['txt'\]"),
    ("text", {"text": 5}, "wrong_type", "field 'text' should be a string, got int"),
    ("messages", {"text": "a"}, "missing_field", "missing field 'messages'"),
    ("messages", {"messages": "hi"}, "wrong_type", "field 'messages' should be a list of messages, got str"),
    ("messages", {"messages": []}, "empty_conversation", "field 'messages' is an empty list"),
    ("messages", {"messages": ["hi"]}, "wrong_type", r"messages\[0\] should be an object with role and content"),
    ("messages", {"messages": [turn("user", "a"), turn("bot", "b")]}, "unknown_role",
     r"messages\[1\].role 'bot' is not one of system, user, assistant, tool"),
    ("messages", {"messages": [{"content": "a"}]}, "missing_field", r"messages\[0\].role None is not one of"),
    ("messages", {"messages": [turn("user", ["a"])]}, "wrong_type", r"messages\[0\].content should be a string, got list"),
    ("messages", {"messages": [{"role": "user"}]}, "missing_field", r"messages\[0\].content should be a string"),
    ("messages", {"messages": [turn("system", "s"), turn("user", "a")]}, "no_assistant_turn",
     "conversation has no assistant turn, so nothing to learn from"),
    ("messages", {"messages": [turn("assistant", "a"), turn("user", "b")]}, "opens_with_assistant",
     "conversation opens with an assistant turn; it needs a system or user turn before it"),
    ("sharegpt", {"conversations": []}, "empty_conversation", "field 'conversations' is an empty list"),
    ("sharegpt", {"conversations": {"from": "human"}}, "wrong_type", "field 'conversations' should be a list of turns"),
    ("sharegpt", {"conversations": [{"from": "human"}]}, "missing_field",
     r"conversations\[0\] should be an object with 'from' and 'value'"),
    ("sharegpt", {"conversations": [{"from": "bot", "value": "a"}]}, "unknown_role",
     r"conversations\[0\].from 'bot' is not one of human, user, gpt"),
    ("sharegpt", {"conversations": [{"from": "human", "value": 3}]}, "wrong_type",
     r"conversations\[0\].value should be a string, got int"),
    ("sharegpt", {"conversations": [{"from": "human", "value": "a"}]}, "no_assistant_turn", "conversation has no"),
    ("sharegpt", {"conversations": [{"from": "gpt", "value": "a"}]}, "opens_with_assistant", "conversation opens"),
    ("alpaca", {"instruction": "a"}, "missing_field", "missing field 'output'"),
    ("alpaca", {"instruction": "a", "output": None}, "missing_field", "missing field 'output'"),
    ("alpaca", {"instruction": " ", "output": "b"}, "empty_field", "field 'instruction' is empty"),
    ("alpaca", {"instruction": "a", "output": 5}, "wrong_type", "field 'output' should be a string, got int"),
    ("alpaca", {"instruction": "a", "output": "b", "input": 5}, "wrong_type", "field 'input' should be a string"),
    ("preference", {"prompt": "p", "chosen": "a"}, "missing_field", "missing field 'rejected'"),
    ("preference", {"prompt": "p", "chosen": "a", "rejected": "a"}, "identical_answers",
     "chosen and rejected are identical, so there is no preference to learn"),
    ("preference", {"prompt": "p", "chosen": "", "rejected": "b"}, "empty_field", "field 'chosen' is empty"),
    ("preference", {"prompt": "p", "chosen": "a", "rejected": [turn("assistant", "b")]}, "wrong_type",
     "prompt, chosen and rejected should be all strings or all messages lists, got prompt str, chosen str, rejected list"),
    ("preference", {"prompt": [turn("user", "p")], "chosen": [turn("assistant", "a")], "rejected": [turn("user", "b")]},
     "no_assistant_turn", "field 'rejected' has no assistant turn"),
    ("preference", {"prompt": [turn("user", "p")], "chosen": [turn("assistant", "a")],
                    "rejected": [turn("assistant", "a")]}, "identical_answers", "chosen and rejected are identical"),
    ("prompt", {"answer": "4"}, "missing_field", "missing field 'prompt'"),
    ("prompt", {"prompt": 4}, "wrong_type", "field 'prompt' should be a string or a messages list, got int"),
    ("prompt", {"prompt": "  "}, "empty_field", "field 'prompt' is empty"),
]


@pytest.mark.parametrize(("fmt", "record", "reason", "message"), BAD)
def test_bad_record(fmt, record, reason, message):
    bad(fmt, record, reason, message)


def test_errors_name_the_files_own_field():
    columns = {"instruction": "question", "output": "answer"}
    bad("alpaca", {"question": "q"}, "missing_field", r"missing field 'answer' \(data.columns output\)", columns)


def test_every_reason_is_tested():
    # not_an_object is tested above; the two malformed_* reasons and invalid_utf8 come from the file readers
    # (test_formats_files.py)
    assert {case[2] for case in BAD} | {"not_an_object", "malformed_json", "malformed_csv", "invalid_utf8"} == \
        set(REASONS)


# ----------------------------------------------------------------------------- detection


@pytest.mark.parametrize(("fields", "fmt"), [
    ({"messages", "text"}, "messages"),
    ({"conversations", "id"}, "sharegpt"),
    ({"prompt", "chosen", "rejected"}, "preference"),
    ({"chosen", "rejected"}, "preference"),  # then refused record by record: no prompt
    ({"instruction", "input", "output"}, "alpaca"),
    ({"prompt", "answer"}, "prompt"),
    ({"text", "meta"}, "text"),
    ({"instruction", "response"}, None),
    ({"question", "answer"}, None),
])
def test_detect(fields, fmt):
    assert detect(fields) == fmt
