"""Built-in rewards for verifiable answers, as used by the shipped arithmetic example.

Every reward is called as `fn(prompts, completions, **fields)` with one entry per completion and
returns one float per completion. A completion is a string, or (conversational data) a list of
messages whose last is the assistant's answer. The expected output ends with

    <answer>42</answer>

exact_match: 1.0 when the text inside the last <answer>...</answer> equals the record's `answer`
(both stripped; numbers compared as numbers, so "42.0" matches 42), else 0.0 (no tag: 0.0).
answer_format: 1.0 when the completion holds exactly one <answer>...</answer> with something in
it and nothing but whitespace after it, else 0.0 — a shaping reward that teaches the format
before the model can get answers right.
"""

from __future__ import annotations

import re
from typing import Any

ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def text_of(completion: Any) -> str:
    """The completion's text: the string itself, or the content of its last message."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    return str(completion)


def _same(got: str, want: Any) -> bool:
    want_text = str(want).strip()
    if got == want_text:
        return True
    try:
        return float(got) == float(want_text)
    except ValueError:
        return False


def exact_match(prompts: list, completions: list, answer: list | None = None, **_: Any) -> list[float]:
    if answer is None:
        raise ValueError("exact_match needs an 'answer' field in the prompt records")
    out = []
    for completion, want in zip(completions, answer, strict=True):
        found = ANSWER.findall(text_of(completion))
        out.append(1.0 if found and want is not None and _same(found[-1].strip(), want) else 0.0)
    return out


def answer_format(prompts: list, completions: list, **_: Any) -> list[float]:
    out = []
    for completion in completions:
        text = text_of(completion)
        found = list(ANSWER.finditer(text))
        ok = len(found) == 1 and found[0].group(1).strip() != "" and text[found[0].end():].strip() == ""
        out.append(1.0 if ok else 0.0)
    return out
