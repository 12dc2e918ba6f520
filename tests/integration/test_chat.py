"""`trainhub chat` in a real terminal (a pty): the prompt, a streamed answer, /reset, unknown commands, /exit."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.export.models import build

pytestmark = pytest.mark.slow  # the real CLI, model builds, llama.cpp: seconds to minutes each


class Terminal:
    def __init__(self, argv: list[str]):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=ROOT, close_fds=True,
                                     env={**os.environ, "COLUMNS": "200", "TERM": "xterm"})
        os.close(slave)
        self.screen = ""

    def expect(self, text: str, timeout: float = 300) -> str:
        """Read until `text` appears; returns what came before it (and consumes it)."""
        deadline = time.time() + timeout
        while text not in self.screen:
            if time.time() > deadline:
                raise AssertionError(f"{text!r} did not appear in {timeout} s; screen: {self.screen!r}")
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                try:
                    self.screen += os.read(self.master, 4096).decode("utf-8", errors="replace")
                except OSError:  # the child closed the terminal
                    if self.proc.poll() is not None and text not in self.screen:
                        raise AssertionError(f"exited {self.proc.returncode} before {text!r}: {self.screen!r}") \
                            from None
        before, _, self.screen = self.screen.partition(text)
        return before

    def type(self, line: str) -> None:
        os.write(self.master, (line + "\n").encode())


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return build("llama", tmp_path_factory.mktemp("chat") / "tiny-chat", width=64, ffn=128)


def test_chat_in_a_terminal(model):
    term = Terminal([sys.executable, "-m", "trainhub", "chat", str(model), "--temperature", "0",
                     "--max-tokens", "6", "--system", "You are brief."])
    header = term.expect("you> ")
    assert "tiny-chat (transformers" in header and "/reset forgets the conversation, /exit leaves" in header
    term.type("Tell me a story.")
    answer = term.expect("you> ")
    assert "model> " in answer
    first = answer.split("model> ", 1)[1].strip()
    term.type("/reset")
    assert "(conversation reset)" in term.expect("you> ")
    term.type("Tell me a story.")  # after /reset the same first turn, greedy: the same answer
    assert term.expect("you> ").split("model> ", 1)[1].strip() == first
    term.type("/help")
    assert "unknown command /help" in term.expect("you> ")
    term.type("/exit")
    assert term.proc.wait(timeout=60) == 0


def test_chat_refuses_a_missing_model(tmp_path):
    term = Terminal([sys.executable, "-m", "trainhub", "chat", str(tmp_path / "nothing")])
    term.expect("no such run folder or model folder")
    assert term.proc.wait(timeout=120) == 1


def test_chat_with_a_gguf_file(model, tmp_path):
    """A .gguf file chats through llama.cpp, with the chat template the file carries."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not importable (pip install -e '.[gguf]')")
    from trainhub.export.main import export

    (record,) = export(model, "gguf", ["q8_0"], tmp_path, verify=False, say=lambda line: None)
    term = Terminal([sys.executable, "-m", "trainhub", "chat", record["path"], "-t", "0", "--max-tokens", "6"])
    assert "tiny-chat-q8_0 (llama.cpp, context 128 tokens)" in term.expect("you> ")
    term.type("Tell me a story.")
    assert "model> " in term.expect("you> ")
    term.type("/exit")
    assert term.proc.wait(timeout=60) == 0
