"""Each format from each file type it fits in, with the location every record carries; bad records
stopped with file:line (file:row N) or counted; files that cannot be read; what format auto reports.

.parquet cases need pyarrow (skipped without it; the error that names `pip install pyarrow` is tested
either way). CSV holds flat records only, so it carries text, alpaca, preference (strings) and prompt.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from trainhub.data.formats import Chat, DataError, PreferencePair, PromptRecord, Text
from trainhub.data.sources import load_records
from trainhub.data.sources_files import check
from trainhub.job import DataSection


def turn(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def write(path: Path, records: list) -> str:
    """Records in the file type the suffix names."""
    if path.suffix == ".jsonl":
        path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    elif path.suffix == ".json":
        path.write_text(json.dumps(records))
    elif path.suffix == ".csv":
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in records for k in r)))
            writer.writeheader()
            writer.writerows(records)
    elif path.suffix == ".parquet":
        pa = pytest.importorskip("pyarrow")
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(records), path)
    elif path.suffix == ".txt":
        path.write_text("\n\n".join(r["text"] for r in records) + "\n")
    return str(path)


def load(path: str, split: str = "train", **data):
    return load_records(DataSection(train=[path], **data), split, seed=0)


def wheres(path: str, suffix: str, n: int) -> list[str]:
    if suffix in (".jsonl", ".txt"):  # .txt: each document's first line, one blank line between documents
        return [f"{path}:{1 + i * (2 if suffix == '.txt' else 1)}" for i in range(n)]
    return [f"{path}:row {i}" for i in range(n)]


# Two records per format and what they become (the location is filled in per file).
CASES = {
    "text": ([{"text": "Once upon a time."}, {"text": "The end."}], [Text("", "Once upon a time."), Text("", "The end.")]),
    "messages": ([{"messages": [turn("user", "hi"), turn("assistant", "hello")]},
                  {"messages": [turn("system", "s"), turn("user", "2+2?"), turn("assistant", "4")]}],
                 [Chat("", [turn("user", "hi"), turn("assistant", "hello")]),
                  Chat("", [turn("system", "s"), turn("user", "2+2?"), turn("assistant", "4")])]),
    "sharegpt": ([{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
                  {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]}],
                 [Chat("", [turn("user", "hi"), turn("assistant", "hello")]),
                  Chat("", [turn("user", "2+2?"), turn("assistant", "4")])]),
    "alpaca": ([{"instruction": "Add.", "input": "2 and 3", "output": "5"},
                {"instruction": "Greet.", "input": "", "output": "Hi."}],
               [Chat("", [turn("user", "Add.\n2 and 3"), turn("assistant", "5")]),
                Chat("", [turn("user", "Greet."), turn("assistant", "Hi.")])]),
    "preference": ([{"prompt": "2+2?", "chosen": "4", "rejected": "5"}, {"prompt": "Hi", "chosen": "Hello", "rejected": "Go"}],
                   [PreferencePair("", "2+2?", "4", "5"), PreferencePair("", "Hi", "Hello", "Go")]),
    "prompt": ([{"prompt": "2+2?", "answer": "4"}, {"prompt": "3+3?", "answer": "6"}],
               [PromptRecord("", "2+2?", "4"), PromptRecord("", "3+3?", "6")]),
}
FITS = {".jsonl": list(CASES), ".json": list(CASES), ".parquet": list(CASES),
        ".csv": ["text", "alpaca", "preference", "prompt"], ".txt": ["text"]}
MATRIX = [(fmt, suffix) for suffix, fmts in FITS.items() for fmt in fmts]


@pytest.mark.parametrize(("fmt", "suffix"), MATRIX, ids=[f"{f}{s}" for f, s in MATRIX])
@pytest.mark.parametrize("declared", [True, False], ids=["declared", "auto"])
def test_each_format_from_each_file_type(tmp_path, fmt, suffix, declared):
    records, expected = CASES[fmt]
    path = write(tmp_path / f"data{suffix}", records)
    got = load(path, format=fmt if declared else "auto")
    at = wheres(path, suffix, 2)
    assert got.items == [replace(e, where=w) for e, w in zip(expected, at, strict=True)]
    assert got.stats == {"files": 1, "records": 2}
    assert got.notes == ([] if declared else
                         [f"data.format auto: {path} read as {fmt}, from "
                          + ("a .txt file" if suffix == ".txt" else f"fields {', '.join(sorted(records[0]))}")])


def test_messages_of_preference_pairs_from_parquet(tmp_path):
    record = {"prompt": [turn("user", "2+2?")], "chosen": [turn("assistant", "4")], "rejected": [turn("assistant", "5")]}
    path = write(tmp_path / "p.parquet", [record])
    assert load(path).items == [PreferencePair(f"{path}:row 0", *record.values())]


# ----------------------------------------------------------------------------- bad records: stopped or counted

ALPACA_OK = {"instruction": "Greet.", "output": "Hi."}


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".parquet"])
def test_a_bad_record_is_named_or_counted(tmp_path, suffix):
    path = write(tmp_path / f"a{suffix}", [ALPACA_OK, {"instruction": "Greet.", "output": None}, ALPACA_OK])
    where = f"{path}:2" if suffix == ".jsonl" else f"{path}:row 1"
    # A CSV cell cannot be null: the missing output is an empty string there.
    reason, problem = ("empty_field", "field 'output' is empty") if suffix == ".csv" else \
        ("missing_field", "missing field 'output'")
    with pytest.raises(DataError, match="^" + re.escape(f"{where}: {problem}")):
        load(path, format="alpaca")
    got = load(path, format="alpaca", on_error="skip")
    assert [r.where for r in got.items] == [wheres(path, suffix, 3)[i] for i in (0, 2)]
    assert got.stats == {"files": 1, "records": 3, f"skipped_{reason}": 1}


def test_malformed_json_lines(tmp_path):
    path = write(tmp_path / "a.jsonl", [{"text": "fine"}, "", '{"text": "unterminated', '["text"]', {"text": "ok"}])
    with pytest.raises(DataError, match="^" + re.escape(f"{path}:3: malformed JSON (Unterminated string starting at: column 10)")):
        load(path)
    got = load(path, on_error="skip")
    assert [r.text for r in got.items] == ["fine", "ok"]
    assert got.stats == {"files": 1, "records": 4, "skipped_malformed_json": 1, "skipped_not_an_object": 1}


def test_malformed_csv_rows(tmp_path):
    path = tmp_path / "a.csv"
    path.write_text('instruction,output\nGreet.,Hi.\n"Add, then say",5,extra\nShort.\n')
    with pytest.raises(DataError, match="^" + re.escape(f"{path}:row 1: 3 cells, but the header names 2 columns")):
        load(str(path))
    got = load(str(path), on_error="skip")
    assert [r.where for r in got.items] == [f"{path}:row 0"]
    assert got.stats == {"files": 1, "records": 3, "skipped_malformed_csv": 1, "skipped_missing_field": 1}


def test_csv_values_are_strings_as_written(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('prompt,answer\n"Line one\nline two, with a comma",007\nNA?,NA\n')
    assert [(r.prompt, r.answer) for r in load(str(path)).items] == [("Line one\nline two, with a comma", "007"),
                                                                     ("NA?", "NA")]


def test_blank_texts_are_counted_not_errors(tmp_path):
    path = write(tmp_path / "a.jsonl", [{"text": "x"}, {"text": "  "}, {"text": ""}, {"text": "y"}])
    got = load(path)
    assert [r.text for r in got.items] == ["x", "y"]
    assert got.stats == {"files": 1, "records": 4, "dropped_empty_text": 2}


# ----------------------------------------------------------------------------- files that cannot be read


def test_json_must_be_a_list(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('{"text": "a"}')
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}: expected a JSON list of records, got dict"):
        load(str(path))
    path.write_text('{"text": "a"}\n{"text": "b"}\n')
    with pytest.raises(DataError, match=r"not valid JSON \(Extra data: line 2 column 1\); one JSON value per line "
                                        r"is JSON lines: name the file .jsonl"):
        load(str(path))


def test_a_byte_that_is_not_utf8_spoils_only_its_record(tmp_path):
    """Named by line (and column), counted as invalid_utf8 under skip; the rest of the file is read."""
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text": "one"}\n{"text": "caf\xe9"}\n{"text": "three"}\n')
    with pytest.raises(DataError, match=f"^{re.escape(str(path))}:2: not UTF-8 text \\(byte 0xe9 at column 14\\) "
                                        r"\(data.on_error: skip leaves bad records out and counts them\)$"):
        load(str(path))
    records = load_records(DataSection(train=str(path), on_error="skip"), "train", seed=0)
    assert [r.text for r in records.items] == ["one", "three"]
    assert records.stats["skipped_invalid_utf8"] == 1


@pytest.mark.parametrize("name, data, where, at", [
    ("a.txt", b"one\n\ntwo\ncaf\xe9\n\nthree\n", ":3", "line 4 column 4"),
    ("a.csv", b"text\none\ncaf\xe9\nthree\n", ":row 1", "line 3 column 4"),
    ("a.json", b'[{"text": "one"}, {"text": "caf\xe9"}, {"text": "three"}]', ":row 1", "column 4"),
])
def test_every_text_file_type_counts_a_bad_byte_in_its_record(tmp_path, name, data, where, at):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError, match=f"^{re.escape(str(path) + where)}: not UTF-8 text \\(byte 0xe9 at {at}\\)"):
        load(str(path))
    records = load_records(DataSection(train=str(path), format="text", on_error="skip"), "train", seed=0)
    assert [r.text for r in records.items] == ["one", "three"]
    assert records.stats["skipped_invalid_utf8"] == 1


def test_parquet_without_pyarrow_says_how_to_get_it(tmp_path, monkeypatch):
    path = tmp_path / "a.parquet"
    path.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(DataError, match="reading .parquet files needs pyarrow: pip install pyarrow"):
        load(str(path))
    assert check(str(path), "auto") == "reading .parquet files needs pyarrow: pip install pyarrow"


def test_txt_is_text_only(tmp_path):
    path = write(tmp_path / "a.txt", [{"text": "a"}])
    with pytest.raises(DataError, match="a .txt file holds plain text, not format alpaca"):
        load(path, format="alpaca")
    assert check(path, "alpaca") == f"a .txt file holds plain text, not format alpaca: {path}"


def test_auto_that_cannot_tell_names_the_fields(tmp_path):
    path = write(tmp_path / "a.jsonl", [{"question": "q", "response": "r"}])
    with pytest.raises(DataError, match=re.escape(f"{path}:1: format auto cannot tell the format from fields "
                                                  f"question, response; set data.format")):
        load(path)
    assert load(path, columns={"instruction": "question", "output": "response"}).items[0].messages[1]["content"] == "r"


def test_auto_refuses_a_format_the_method_cannot_use(tmp_path):
    path = write(tmp_path / "a.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b"}])
    with pytest.raises(DataError, match=re.escape(f"{path}:1: format auto read this as preference (from fields "
                                                  f"chosen, prompt, rejected), which method sft cannot use: it "
                                                  f"reads messages, sharegpt, alpaca")):
        load_records(DataSection(train=[path]), "train", seed=0, method="sft")


def test_a_split_holds_one_kind_of_record(tmp_path):
    a = write(tmp_path / "a.jsonl", [ALPACA_OK])
    b = write(tmp_path / "b.jsonl", [{"prompt": "p", "answer": "4"}])
    with pytest.raises(DataError, match=re.escape(f"{b}: read as prompt (prompt records) but {a} holds chat records")):
        load_records(DataSection(train=[a, b]), "train", seed=0)


def test_auto_decides_file_by_file_and_says_so_once_per_format(tmp_path):
    folder = tmp_path / "mix"
    folder.mkdir()
    sharegpt = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
    a, b = write(folder / "a.jsonl", [ALPACA_OK]), write(folder / "b.json", [ALPACA_OK, ALPACA_OK])
    c, d = write(folder / "c.jsonl", [sharegpt]), write(folder / "d.jsonl", [ALPACA_OK])
    got = load_records(DataSection(train=[str(folder)]), "train", seed=0, method="sft")
    assert [r.where for r in got.items] == [f"{a}:1", f"{b}:row 0", f"{b}:row 1", f"{c}:1", f"{d}:1"]
    assert all(isinstance(r, Chat) for r in got.items)
    assert got.notes == [f"data.format auto: {a} (and 2 more files) read as alpaca, from fields instruction, output",
                         f"data.format auto: {c} read as sharegpt, from fields conversations"]
