"""`trainhub chat`: a streaming conversation in the terminal, with the model's own chat template.

Each answer is printed as it is sampled. The whole conversation (system prompt first) is rendered
again for every turn, so the model sees exactly what the template makes of it. Commands: /reset
(forget the conversation, keep the system prompt), /exit (or Ctrl-D). Ctrl-C stops an answer midway
(what was said is kept); a second Ctrl-C at the prompt leaves.
"""

from __future__ import annotations

import sys

from trainhub.serve.generate import GenerateError, Generator

PROMPT = "you> "
HELP = "/reset forgets the conversation, /exit leaves"


def chat(gen: Generator, system: str | None, temperature: float, max_tokens: int, out=sys.stdout,
         read=input) -> int:
    out.write(f"{gen.name} ({gen.engine}, context {gen.context} tokens). {HELP}.\n")
    if not gen.template:
        out.write("note: the model has no chat template; each line is continued as plain text\n")
    messages: list[dict] = [{"role": "system", "content": system}] if system else []
    while True:
        try:
            line = read(PROMPT)
        except (EOFError, KeyboardInterrupt):
            out.write("\n")
            return 0
        text = line.strip()
        if not text:
            continue
        if text == "/exit":
            return 0
        if text == "/reset":
            messages = messages[:1] if system else []
            out.write("(conversation reset)\n")
            continue
        if text.startswith("/"):
            out.write(f"unknown command {text.split()[0]}; {HELP}\n")
            continue
        turn = [*messages, {"role": "user", "content": line}]
        try:
            prompt = gen.render(turn) if gen.template else line
        except GenerateError as err:
            out.write(f"error: {err}\n")
            continue
        answer, finish = "", None
        out.write("model> ")
        out.flush()
        try:
            for chunk in gen.stream(prompt, chat=bool(gen.template), max_tokens=max_tokens, temperature=temperature):
                answer += chunk.text
                finish = chunk.finish or finish
                out.write(chunk.text)
                out.flush()
        except KeyboardInterrupt:
            out.write(" [stopped]")
        out.write("\n")
        if finish == "length" and not answer:
            out.write(f"(the conversation fills the model's context of {gen.context} tokens: /reset to start again)\n")
        out.flush()
        messages = [*turn, {"role": "assistant", "content": answer}]
