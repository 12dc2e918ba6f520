"""Chat conversations -> token ids and labels, loss on assistant turns only.

The tokenizer's own chat template renders each conversation. The tokens of an
assistant turn are found from the template itself, not by searching strings:
for each assistant message i,

    before = render(messages[:i], add_generation_prompt=True)
    after  = render(messages[:i+1])

and the turn is after[len(before):], cut just past the last EOS in it (ChatML
puts a newline after <|im_end|>; that newline is not a target). Two things are
checked, with a clear error if a template breaks them: `before` is a token
prefix of `after` (the template renders turns independently), and the turn
contains the EOS token (a model that never sees EOS after its answer cannot stop).
"""

from __future__ import annotations

IGNORE = -100


class TemplateError(ValueError):
    pass


def encode_conversation(tokenizer, messages: list[dict], train_on: str = "assistant") -> tuple[list[int], list[int]]:
    """(input_ids, labels) for one conversation; labels are IGNORE outside assistant turns."""
    return encode_conversations(tokenizer, [messages], train_on)[0]


def encode_conversations(tokenizer, conversations: list[list[dict]],
                         train_on: str = "assistant") -> list[tuple[list[int], list[int]]]:
    """encode_conversation for many conversations at once, with the same result.

    Every text the masks need (each conversation, and `before`/`after` for each assistant turn) is
    rendered first, then all are tokenized in one batch call, which the tokenizers library spreads
    over the cores. Rendering and tokenizing apart is what apply_chat_template(tokenize=True) does
    (the rendered text, tokenized without adding special tokens), so the ids are identical.
    """
    texts: list[str] = []
    plans = []  # per conversation: index of the full text, and (before, after) text indices per assistant turn
    for messages in conversations:
        full = _add(texts, _render(tokenizer, messages, add_generation_prompt=False))
        turns = []
        if train_on != "all":
            for i, message in enumerate(messages):
                if message["role"] != "assistant":
                    continue
                before = _add(texts, _render(tokenizer, messages[:i], add_generation_prompt=True))
                last = i == len(messages) - 1
                after = full if last else _add(texts, _render(tokenizer, messages[: i + 1], False))
                turns.append((before, after))
        plans.append((full, turns))
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return [_labels(tokenizer, encoded, full, turns, train_on) for full, turns in plans]


def _add(texts: list[str], text: str) -> int:
    texts.append(text)
    return len(texts) - 1


def _labels(tokenizer, encoded: list[list[int]], full: int, turns, train_on: str) -> tuple[list[int], list[int]]:
    ids = list(encoded[full])
    if train_on == "all":
        return ids, list(ids)
    labels = [IGNORE] * len(ids)
    eos = tokenizer.eos_token_id
    for b, a in turns:
        before, after = encoded[b], encoded[a]
        if after[: len(before)] != before or ids[: len(after)] != after:
            raise TemplateError("the chat template does not render a conversation as the concatenation of its "
                                "turns, so assistant tokens cannot be located; use a template that does")
        turn = after[len(before):]
        if eos not in turn:
            raise TemplateError(f"the chat template does not close assistant turns with the EOS token "
                                f"{tokenizer.eos_token!r}; a model trained on it would not learn to stop")
        end = len(before) + len(turn) - turn[::-1].index(eos)
        labels[len(before):end] = ids[len(before):end]
    return ids, labels


def _render(tokenizer, messages: list[dict], add_generation_prompt: bool) -> str:
    if not messages:  # the readers refuse a conversation that opens with the assistant
        raise TemplateError("an assistant turn needs a turn before it (system or user) to be located")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
