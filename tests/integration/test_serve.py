"""`trainhub serve` as a user runs it, answered through the official `openai` client: models, chat and
completions, streamed and not, a wrong key refused, and no start beyond loopback without a key."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from tests.conftest import ROOT, run_cli  # noqa: E402
from tests.export.models import build  # noqa: E402

pytestmark = pytest.mark.slow  # the real CLI, model builds, llama.cpp: seconds to minutes each

KEY = "sk-test-trainhub"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = build("llama", tmp_path_factory.mktemp("serve") / "tiny-chat", width=64, ffn=128)
    with serving(folder) as url:
        yield url, folder


@contextlib.contextmanager
def serving(target):
    """`trainhub serve TARGET --api-key KEY` on a free loopback port, until the block ends."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "trainhub", "serve", str(target), "--port", str(port),
                             "--api-key", KEY], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, "COLUMNS": "200"})
    import httpx

    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve exited {proc.returncode}: {proc.stdout.read()}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=2)
            break
        except httpx.TransportError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("serve did not start listening in 300 s")
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def client(url: str, key: str = KEY):
    return openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=120)


def test_models_and_chat(server):
    url, folder = server
    c = client(url)
    assert [m.id for m in c.models.list().data] == ["tiny-chat"]
    done = c.chat.completions.create(model="tiny-chat", messages=[{"role": "system", "content": "Be brief."},
                                                                  {"role": "user", "content": "Hi!"}],
                                     max_tokens=8, temperature=0)
    choice = done.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert done.usage.prompt_tokens > 5 and 0 <= done.usage.completion_tokens <= 8
    # greedy is deterministic: the streamed answer is the same text, in pieces
    stream = c.chat.completions.create(model="tiny-chat", messages=[{"role": "system", "content": "Be brief."},
                                                                    {"role": "user", "content": "Hi!"}],
                                       max_tokens=8, temperature=0, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == choice.message.content
    assert chunks[-1].choices[0].finish_reason == choice.finish_reason


def test_completions(server):
    url, _ = server
    c = client(url)
    done = c.completions.create(model="tiny-chat", prompt="Once upon a time", max_tokens=6, temperature=0)
    assert done.choices[0].finish_reason == "length" or done.usage.completion_tokens < 6
    pieces = list(c.completions.create(model="tiny-chat", prompt="Once upon a time", max_tokens=6, temperature=0,
                                       stream=True))
    assert "".join(p.choices[0].text for p in pieces) == done.choices[0].text
    sampled = c.completions.create(model="tiny-chat", prompt="Once", max_tokens=6, temperature=1.0, seed=3)
    again = c.completions.create(model="tiny-chat", prompt="Once", max_tokens=6, temperature=1.0, seed=3)
    assert sampled.choices[0].text == again.choices[0].text  # seeded sampling repeats


def test_wrong_key_is_refused(server):
    url, _ = server
    with pytest.raises(openai.AuthenticationError):
        client(url, "sk-wrong").models.list()
    with pytest.raises(openai.AuthenticationError):
        client(url, "sk-wrong").chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}],
                                                       stream=True)


def test_bad_request_is_a_400(server):
    url, _ = server
    with pytest.raises(openai.BadRequestError, match="n: only 1"):
        client(url).chat.completions.create(model="x", messages=[{"role": "user", "content": "hi"}], n=2)


def test_no_key_beyond_loopback_is_refused(tmp_path):
    done = run_cli("serve", str(tmp_path), "--host", "0.0.0.0", env={"COLUMNS": "200", "TRAINHUB_API_KEY": ""})
    assert done.returncode == 1
    assert "--host 0.0.0.0 reaches beyond this machine: give an API key" in done.stderr


def test_serve_a_gguf_file(server, tmp_path):
    """A .gguf file is served by llama.cpp: the same API, streamed."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not importable (pip install -e '.[gguf]')")
    from trainhub.export.main import export

    _, folder = server
    (record,) = export(folder, "gguf", ["q8_0"], tmp_path, verify=False, say=lambda line: None)
    with serving(record["path"]) as url:
        c = client(url)
        assert [m.id for m in c.models.list().data] == ["tiny-chat-q8_0"]
        chunks = list(c.chat.completions.create(model="tiny-chat-q8_0", messages=[{"role": "user", "content": "Hi"}],
                                                max_tokens=6, temperature=0, stream=True))
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        done = c.completions.create(model="tiny-chat-q8_0", prompt="Once upon", max_tokens=4, temperature=0)
        assert done.choices[0].finish_reason in ("stop", "length")
        with pytest.raises(openai.AuthenticationError):
            client(url, "sk-wrong").models.list()
