#!/usr/bin/env python3
"""Write the small data sets the trl examples ship with, deterministically (standard library only).

config/data/preference.jsonl, preference_eval.jsonl (config/dpo_trl.yaml): preference pairs made
from the chat set's first exchanges. prompt = the conversation up to its first user turn (with
its system message, if any); chosen = the set's answer, which follows the set's fixed rules and is
always right; rejected = the first answer of another conversation on a different question, so it
answers something else. Messages lists throughout.

config/data/arithmetic.jsonl (config/grpo_trl.yaml): arithmetic prompts with verifiable answers,
{"prompt": "...", "answer": "<number>"}: sums, differences and products of small numbers, asking
for the result inside <answer></answer> (the built-in rewards trainhub.rewards:exact_match and
answer_format score exactly that).

    python scripts/make_rl_data.py          # rewrites the three files
"""

from __future__ import annotations

import json
import random
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "config" / "data"
OPS = (("plus", "+", lambda a, b: a + b), ("minus", "-", lambda a, b: a - b), ("times", "*", lambda a, b: a * b))


def first_exchange(messages: list[dict]) -> tuple[list[dict], dict] | None:
    for i, m in enumerate(messages):
        if m["role"] == "user" and i + 1 < len(messages) and messages[i + 1]["role"] == "assistant":
            return messages[: i + 1], messages[i + 1]
    return None


def pairs(source: Path, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    exchanges = [e for line in source.read_text().splitlines()
                 if (e := first_exchange(json.loads(line)["messages"])) is not None]
    out = []
    for prompt, chosen in exchanges[:n]:
        while True:
            _, other = rng.choice(exchanges)
            if other["content"] != chosen["content"]:
                break
        out.append({"prompt": prompt, "chosen": [chosen], "rejected": [{"role": "assistant",
                                                                         "content": other["content"]}]})
    return out


def arithmetic(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        word, symbol, fn = rng.choice(OPS)
        a, b = rng.randint(0, 20), rng.randint(0, 20)
        if symbol == "-" and b > a:
            a, b = b, a
        question = rng.choice([f"What is {a} {word} {b}?", f"Compute {a} {symbol} {b}."])
        out.append({"prompt": f"{question} Give the result inside <answer></answer>.", "answer": str(fn(a, b))})
    return out


def write(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    print(f"wrote {path} ({len(records)} records)")


def main() -> None:
    write(DATA / "preference.jsonl", pairs(DATA / "chat.jsonl", 400, seed=1))
    write(DATA / "preference_eval.jsonl", pairs(DATA / "chat_eval.jsonl", 40, seed=2))
    write(DATA / "arithmetic.jsonl", arithmetic(400, seed=3))


if __name__ == "__main__":
    main()
