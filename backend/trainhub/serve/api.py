"""`trainhub serve`: an OpenAI-compatible HTTP API over one model (FastAPI + uvicorn).

    GET  /v1/models               the one model, under its run's name
    POST /v1/chat/completions     messages -> the model's chat template -> an answer (stream: SSE chunks)
    POST /v1/completions          a prompt continued as plain text (stream: SSE chunks)

Streams are server-sent events, `data: {json}` per chunk and `data: [DONE]` last, as OpenAI sends
them, so the official clients work unchanged. Honoured: max_tokens (max_completion_tokens), temperature,
top_p, stop, seed, stream; n must be 1. Other fields clients send are accepted and ignored.

Security: the server binds to 127.0.0.1 by default. Bound to any other address it refuses to start
without an API key (--api-key or $TRAINHUB_API_KEY); with a key every request must carry
`Authorization: Bearer <key>` (compared in constant time) or gets 401.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import time
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from trainhub.serve.generate import GenerateError, Generator

DEFAULT_MAX_TOKENS = 256


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict] | None = None


class Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    max_tokens: int | None = Field(None, ge=0)
    max_completion_tokens: int | None = Field(None, ge=0)
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    n: int = Field(1, ge=1)


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(Sampling):
    prompt: str | list[str]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def create_app(gen: Generator, api_key: str | None):
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, StreamingResponse

    app = FastAPI(title="trainhub serve", docs_url=None, redoc_url=None)
    created = int(time.time())

    def error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None):
        return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": code}},
                            status_code=status)

    @app.middleware("http")
    async def check_key(request: Request, call_next):
        if api_key is not None:
            given = request.headers.get("authorization", "")
            token = given[7:] if given.lower().startswith("bearer ") else ""
            if not hmac.compare_digest(token.encode(), api_key.encode()):
                return error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:])
        return error(400, f"{where}: {first.get('msg', 'invalid request')}")

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": gen.name, "object": "model", "created": created,
                                            "owned_by": "trainhub"}]}

    @app.post("/v1/chat/completions")
    def chat_completions(req: ChatRequest):
        if req.n != 1:
            return error(400, "n: only 1 choice per request is supported")
        try:
            prompt = gen.render([{"role": m.role, "content": _text(m.content)} for m in req.messages])
        except GenerateError as err:
            return error(400, str(err))
        return _respond(req, prompt, chat=True)

    @app.post("/v1/completions")
    def completions(req: CompletionRequest):
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if req.n != 1 or len(prompts) != 1:
            return error(400, "prompt: one prompt and n=1 per request are supported")
        return _respond(req, prompts[0], chat=False)

    def _respond(req: Sampling, prompt: str, chat: bool):
        kind = "chat.completion" if chat else "text_completion"
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        max_tokens = req.max_completion_tokens or req.max_tokens or DEFAULT_MAX_TOKENS
        chunks = gen.stream(prompt, chat=chat, max_tokens=max_tokens, temperature=req.temperature,
                            top_p=req.top_p, stop=stops, seed=req.seed)
        now = int(time.time())
        head = {"id": rid, "created": now, "model": gen.name}
        if req.stream:
            return StreamingResponse(_sse(chunks, head, chat), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        text, finish, usage = "", "stop", {}
        for c in chunks:
            text += c.text
            finish, usage = c.finish or finish, c.usage or usage
        usage = {**usage, "total_tokens": usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)}
        choice: dict[str, Any] = ({"index": 0, "message": {"role": "assistant", "content": text},
                                   "finish_reason": finish} if chat else
                                  {"index": 0, "text": text, "logprobs": None, "finish_reason": finish})
        return {**head, "object": kind, "choices": [choice], "usage": usage}

    return app


def _text(content) -> str:
    """Message content: a string, or OpenAI's list of parts (text parts joined; others refused)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        if part.get("type") != "text":
            raise GenerateError(f"message content of type {part.get('type')} is not supported (text only)")
        parts.append(part.get("text", ""))
    return "".join(parts)


def _sse(chunks, head: dict, chat: bool):
    kind = "chat.completion.chunk" if chat else "text_completion"

    def event(choice: dict) -> str:
        return "data: " + json.dumps({**head, "object": kind, "choices": [choice]}) + "\n\n"

    if chat:
        yield event({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None})
    for c in chunks:
        if c.text:
            yield event({"index": 0, "delta": {"content": c.text}, "finish_reason": None} if chat else
                        {"index": 0, "text": c.text, "logprobs": None, "finish_reason": None})
        if c.finish:
            yield event({"index": 0, "delta": {}, "finish_reason": c.finish} if chat else
                        {"index": 0, "text": "", "logprobs": None, "finish_reason": c.finish})
    yield "data: [DONE]\n\n"


def serve(gen: Generator, host: str, port: int, api_key: str | None, say=print) -> None:
    import uvicorn

    if not is_loopback(host) and not api_key:
        raise GenerateError(f"--host {host} reaches beyond this machine: give an API key (--api-key or "
                            f"$TRAINHUB_API_KEY), or bind to 127.0.0.1")
    say(f"serving {gen.name} ({gen.engine}) at http://{host}:{port}/v1 "
        f"({'API key required' if api_key else 'no API key: loopback only'}); Ctrl-C stops")
    uvicorn.run(create_app(gen, api_key), host=host, port=port, log_level="warning")
