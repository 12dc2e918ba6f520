"""Record formats: what one record of each format looks like, how a format is recognised, and the
typed record it becomes. Every rule a record can break is checked here, once.

    format      one record, by canonical field names                                   becomes
    text        {"text": str}                                                          Text
    messages    {"messages": [{"role": system|user|assistant|tool, "content": str}]}   Chat
    sharegpt    {"conversations": [{"from": human|gpt|system|..., "value": str}],      Chat
                 "system"?: str}
    alpaca      {"instruction": str, "input"?: str, "output": str, "system"?: str}     Chat
    preference  {"prompt", "chosen", "rejected"}: all strings, or all messages lists   PreferencePair
    prompt      {"prompt": str or messages, "answer"?: any, ...}                       PromptRecord

`data.columns` maps canonical names to a file's own (`{instruction: question}` reads the
instruction from the field `question`); errors name the file's field, so the user can find it.
Other fields are ignored, except by `prompt`, which keeps them for the reward function.

sharegpt and alpaca become OpenAI-style messages, so SFT sees one shape. alpaca gives
[system?] + user (instruction, then "\\n" and the input when there is one, as LLaMA-Factory joins
them, so a job renders the same under either backend) + assistant (output). A conversation,
whatever its format, must be non-empty, have known roles and string contents, contain an
assistant turn and not open with one: an answer needs a turn before it to be located (data/chat.py).

Detection (`format: auto`) reads a file's first record and takes the first rule that fits:
messages -> messages, conversations -> sharegpt, chosen + rejected -> preference,
instruction + output -> alpaca, prompt -> prompt, text -> text. A .txt file is always text.

A record that breaks a rule raises `BadRecord` with its location and one of REASONS; the loader
(data/sources.py) stops or counts it, as `data.on_error` says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NoReturn

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "tool": "tool", "observation": "tool", "function_call": "assistant"}

# Why a record is refused; `data.on_error: skip` counts each as `skipped_<reason>`.
REASONS = ("malformed_json", "malformed_csv", "not_an_object", "missing_field", "wrong_type", "empty_field",
           "empty_conversation", "unknown_role", "no_assistant_turn", "opens_with_assistant",
           "identical_answers", "invalid_utf8")

DETECT = (("messages", ("messages",)), ("sharegpt", ("conversations",)), ("preference", ("chosen", "rejected")),
          ("alpaca", ("instruction", "output")), ("prompt", ("prompt",)), ("text", ("text",)))

# What each format becomes: records of one kind can share a split.
KIND = {"text": "text", "messages": "chat", "sharegpt": "chat", "alpaca": "chat", "preference": "preference",
        "prompt": "prompt"}


class DataError(ValueError):
    """Data that cannot be used; the message starts with the file (and line or row) at fault."""


class BadRecord(DataError):
    """One record that breaks a rule of its format."""

    def __init__(self, where: str, reason: str, message: str):
        assert reason in REASONS, reason
        super().__init__(f"{where}: {message}")
        self.where, self.reason = where, reason


Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class Text:
    where: str
    text: str


@dataclass(frozen=True)
class Chat:
    where: str
    messages: Messages


@dataclass(frozen=True)
class PreferencePair:
    """A prompt and two answers, the chosen one preferred (for DPO-family methods; none reads it yet)."""

    where: str
    prompt: str | Messages
    chosen: str | Messages
    rejected: str | Messages


@dataclass(frozen=True)
class PromptRecord:
    """A prompt to generate from, with what a reward needs to score the result (for RL; none reads it yet)."""

    where: str
    prompt: str | Messages
    answer: Any = None
    """The `answer` field (ground truth), if the record has one."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Every other field, by the file's name."""


Record = Text | Chat | PreferencePair | PromptRecord


def detect(fields: set[str]) -> str | None:
    """The format a record with these (canonical) fields is read as, or None."""
    for fmt, needs in DETECT:
        if all(f in fields for f in needs):
            return fmt
    return None


def parse(fmt: str, raw: Any, where: str, columns: dict[str, str]) -> Record:
    """One raw record (a parsed JSON value or a table row) as the typed record of `fmt`."""
    if not isinstance(raw, dict):
        raise BadRecord(where, "not_an_object", f"expected an object with fields, got {type(raw).__name__}")
    return PARSERS[fmt](Fields(raw, where, columns))


class Fields:
    """A raw record read by canonical field names; its errors name the file's own field and location."""

    def __init__(self, raw: dict, where: str, columns: dict[str, str]):
        self.raw, self.where, self.columns = raw, where, columns

    def label(self, name: str) -> str:
        own = self.columns.get(name)
        return f"'{own}' (data.columns {name})" if own else f"'{name}'"

    def get(self, name: str) -> Any:
        return self.raw.get(self.columns.get(name, name))

    def fail(self, reason: str, message: str) -> NoReturn:
        raise BadRecord(self.where, reason, message)

    def require(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            self.fail("missing_field", f"missing field {self.label(name)}; the record has {sorted(self.raw)}")
        return value

    def string(self, name: str, optional: bool = False, blank_ok: bool = False) -> Any:
        """A required non-blank string; with optional, None when absent or empty."""
        value = self.get(name) if optional else self.require(name)
        if value is None:
            return None
        if not isinstance(value, str):
            self.fail("wrong_type", f"field {self.label(name)} should be a string, got {type(value).__name__}")
        if optional:
            return value or None
        if not value.strip() and not blank_ok:
            self.fail("empty_field", f"field {self.label(name)} is empty")
        return value


def message_list(r: Fields, name: str, value: Any) -> Messages:
    """OpenAI-style messages: a non-empty list of {role, content} with a known role and a string content."""
    if not isinstance(value, list):
        r.fail("wrong_type", f"field {r.label(name)} should be a list of messages, got {type(value).__name__}")
    if not value:
        r.fail("empty_conversation", f"field {r.label(name)} is an empty list")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            r.fail("wrong_type", f"{name}[{i}] should be an object with role and content, got {type(m).__name__}")
        m = {k: v for k, v in m.items() if v is not None}  # a table fills absent struct fields with null
        if m.get("role") not in ROLES:
            r.fail("unknown_role" if "role" in m else "missing_field",
                   f"{name}[{i}].role {m.get('role')!r} is not one of {', '.join(ROLES)}")
        if not isinstance(m.get("content"), str):
            r.fail("wrong_type" if "content" in m else "missing_field",
                   f"{name}[{i}].content should be a string, got {type(m.get('content')).__name__}")
        out.append(m)
    return out


def _text(r: Fields) -> Text:
    return Text(r.where, r.string("text", blank_ok=True))  # blank: no error, the loader counts it as dropped


def _messages(r: Fields) -> Chat:
    return _chat(r, message_list(r, "messages", r.require("messages")))


def _alpaca(r: Fields) -> Chat:
    system, instruction, extra = r.string("system", optional=True), r.string("instruction"), \
        r.string("input", optional=True)
    return _chat(r, ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": f"{instruction}\n{extra}" if extra else instruction},
        {"role": "assistant", "content": r.string("output")}])


def _chat(r: Fields, messages: Messages) -> Chat:
    if not any(m["role"] == "assistant" for m in messages):
        r.fail("no_assistant_turn", "conversation has no assistant turn, so nothing to learn from")
    if messages[0]["role"] == "assistant":
        r.fail("opens_with_assistant", "conversation opens with an assistant turn; it needs a system or user "
                                       "turn before it")
    return Chat(r.where, messages)


def _sharegpt(r: Fields) -> Chat:
    turns = r.require("conversations")
    if not isinstance(turns, list):
        r.fail("wrong_type", f"field {r.label('conversations')} should be a list of turns, got {type(turns).__name__}")
    if not turns:
        r.fail("empty_conversation", f"field {r.label('conversations')} is an empty list")
    system = r.string("system", optional=True)
    messages = [{"role": "system", "content": system}] if system else []
    for i, t in enumerate(turns):
        if not isinstance(t, dict) or t.get("from") is None or t.get("value") is None:
            r.fail("missing_field", f"conversations[{i}] should be an object with 'from' and 'value', got {t!r:.80}")
        if t["from"] not in SHAREGPT_ROLES:
            r.fail("unknown_role", f"conversations[{i}].from {t['from']!r} is not one of {', '.join(SHAREGPT_ROLES)}")
        if not isinstance(t["value"], str):
            r.fail("wrong_type", f"conversations[{i}].value should be a string, got {type(t['value']).__name__}")
        messages.append({"role": SHAREGPT_ROLES[t["from"]], "content": t["value"]})
    return _chat(r, messages)


def _preference(r: Fields) -> PreferencePair:
    values = {name: r.require(name) for name in ("prompt", "chosen", "rejected")}
    if all(isinstance(v, str) for v in values.values()):
        prompt, chosen, rejected = (r.string(name) for name in values)
    elif all(isinstance(v, list) for v in values.values()):
        prompt = message_list(r, "prompt", values["prompt"])
        chosen, rejected = (message_list(r, name, values[name]) for name in ("chosen", "rejected"))
        for name, answer in (("chosen", chosen), ("rejected", rejected)):
            if not any(m["role"] == "assistant" for m in answer):
                r.fail("no_assistant_turn", f"field {r.label(name)} has no assistant turn")
    else:
        kinds = ", ".join(f"{name} {type(v).__name__}" for name, v in values.items())
        r.fail("wrong_type", f"prompt, chosen and rejected should be all strings or all messages lists, got {kinds}")
    if chosen == rejected:
        r.fail("identical_answers", "chosen and rejected are identical, so there is no preference to learn")
    return PreferencePair(r.where, prompt, chosen, rejected)


def _prompt(r: Fields) -> PromptRecord:
    prompt = r.require("prompt")
    if not isinstance(prompt, str | list):
        r.fail("wrong_type", f"field {r.label('prompt')} should be a string or a messages list, "
                             f"got {type(prompt).__name__}")
    prompt = r.string("prompt") if isinstance(prompt, str) else message_list(r, "prompt", prompt)
    used = {r.columns.get(f, f) for f in ("prompt", "answer")}
    return PromptRecord(r.where, prompt, r.get("answer"), {k: v for k, v in r.raw.items() if k not in used})


PARSERS = {"text": _text, "messages": _messages, "sharegpt": _sharegpt, "alpaca": _alpaca,
           "preference": _preference, "prompt": _prompt}
