"""The commands that use a trained model: `trainhub export`, `trainhub chat`, `trainhub serve`.

Registered on the main app by trainhub.cli (frozen with the rest by tests/unit/test_cli.py). Each
takes a run folder (its final model, or --checkpoint), a Hugging Face model folder, or (chat, serve)
a .gguf file.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

TARGET = typer.Argument(..., help="A run folder, a Hugging Face model folder, or (chat, serve) a .gguf file.",
                        show_default=False)
CHECKPOINT = typer.Option(None, "--checkpoint", help="A checkpoint of the run instead of its final model: "
                          "latest, best, step-N or a path.")


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error[/red] {message}", markup=True, highlight=False)
    return typer.Exit(1)


def export_cmd(target: Path = TARGET, checkpoint: str | None = CHECKPOINT,
               fmt: str = typer.Option("gguf", "--format", "-f", help="hf (a folder ready for vLLM/SGLang) or gguf."),
               quant: list[str] = typer.Option([], "--quant", "-q", help="GGUF type (repeatable): f32, f16, bf16, "
                                               "q8_0 (trainhub's writer), q6_k, q5_k_m, q5_k_s, q4_k_m, q4_k_s, "
                                               "q3_k_m, q2_k, q4_0 (llama.cpp's quantizer). Default f16."),
               out: Path | None = typer.Option(None, "--output", "-o", help="Output folder, or a .gguf file for "
                                               "one type. Default: RUN/export/."),
               verify: bool = typer.Option(True, "--verify/--no-verify", help="Load each GGUF in llama.cpp and "
                                           "compare tokenisation, log-probs and greedy text with the HF model.")):
    """Export the model: a Hugging Face folder, or GGUF files verified in llama.cpp (export.json beside them)."""
    from trainhub.export.main import ExportError, export

    try:
        export(target, fmt, quant, out, checkpoint, verify=verify, say=lambda line: console.print(line, markup=False))
    except ExportError as err:
        raise _fail(str(err)) from None


def chat_cmd(target: Path = TARGET, checkpoint: str | None = CHECKPOINT,
             system: str | None = typer.Option(None, "--system", help="A system prompt opening the conversation."),
             temperature: float = typer.Option(0.7, "--temperature", "-t", min=0.0, max=2.0,
                                               help="Sampling temperature; 0 is greedy."),
             max_tokens: int = typer.Option(512, "--max-tokens", min=1, help="Longest answer, in tokens.")):
    """Chat with the model in the terminal, answers streamed, with its own chat template (/reset, /exit)."""
    from trainhub.serve.chat import chat
    from trainhub.serve.generate import GenerateError, load

    try:
        gen = load(target, checkpoint)
    except GenerateError as err:
        raise _fail(str(err)) from None
    raise typer.Exit(chat(gen, system, temperature, max_tokens))


def serve_cmd(target: Path = TARGET, checkpoint: str | None = CHECKPOINT,
              host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; beyond loopback an API key "
                                       "is required."),
              port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
              api_key: str | None = typer.Option(None, "--api-key", help="Require `Authorization: Bearer KEY` "
                                                 "(default: $TRAINHUB_API_KEY).")):
    """Serve the model over an OpenAI-compatible API: /v1/chat/completions, /v1/completions, /v1/models."""
    from trainhub.serve.api import serve
    from trainhub.serve.generate import GenerateError, load

    api_key = api_key or os.environ.get("TRAINHUB_API_KEY") or None
    try:
        from trainhub.serve.api import is_loopback

        if not is_loopback(host) and not api_key:  # before the model loads: refuse at once
            raise GenerateError(f"--host {host} reaches beyond this machine: give an API key (--api-key or "
                                f"$TRAINHUB_API_KEY), or bind to 127.0.0.1")
        serve(load(target, checkpoint), host, port, api_key, say=lambda line: console.print(line, markup=False))
    except GenerateError as err:
        raise _fail(str(err)) from None


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)
    app.command("chat")(chat_cmd)
    app.command("serve")(serve_cmd)
