"""Text generation for `trainhub chat` and `trainhub serve`: one interface, two engines.

    load(target) -> Generator
      a run folder or Hugging Face model folder -> transformers (the exact trained weights, CPU or GPU)
      a .gguf file                              -> llama.cpp through llama-cpp-python

A Generator renders a conversation with the model's own chat template (the tokenizer's for HF, the
GGUF's tokenizer.chat_template for llama.cpp, rendered with the same Jinja sandbox rules as
transformers) and streams text as it is sampled. Sampling: temperature 0 is greedy; otherwise
temperature and top-p over the full distribution. Generation stops at any EOS / end-of-turn token,
at a stop string (not included in the text), or after max_tokens. One generation runs at a time per
model (a lock): the server queues concurrent requests rather than interleave them on one cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


class GenerateError(ValueError):
    pass


@dataclass
class Chunk:
    text: str
    finish: str | None = None
    """None while generating; "stop" (EOS or stop string) or "length" (max_tokens) on the last chunk."""
    usage: dict = field(default_factory=dict)
    """prompt_tokens, completion_tokens (on the last chunk)."""


class Generator:
    name: str
    engine: str
    template: str | None
    context: int

    def __init__(self):
        self.lock = threading.Lock()

    def render(self, messages: list[dict]) -> str:
        if not self.template:
            raise GenerateError(f"{self.name} has no chat template: use the completions endpoint, or train "
                                f"with data.template set")
        return render(self.template, messages, self.bos_text, self.eos_text)

    def stream(self, prompt: str, *, chat: bool, max_tokens: int = 256, temperature: float = 0.7,
               top_p: float = 1.0, stop: list[str] | None = None, seed: int | None = None) -> Iterator[Chunk]:
        """`chat`: the prompt was rendered by the template (which writes BOS itself where it has one)."""
        with self.lock:
            yield from _with_stops(self._tokens(prompt, chat, max_tokens, temperature, top_p, seed), stop or [])


def render(template: str, messages: list[dict], bos: str | None, eos: str | None) -> str:
    """A chat template rendered as transformers renders it (sandboxed Jinja, trim_blocks, lstrip_blocks)."""
    from jinja2 import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                                bos_token=bos or "", eos_token=eos or "")
    except TemplateError as err:
        raise GenerateError(f"chat template: {err}") from None


def _with_stops(pieces: Iterator[tuple[str, str | None, dict]], stops: list[str]) -> Iterator[Chunk]:
    """Text pieces -> chunks, cut at the first stop string; text that could begin a stop string is held
    back until it cannot."""
    held = ""
    hold = max((len(s) for s in stops), default=1) - 1
    for text, finish, usage in pieces:
        held += text
        cut = min((i for i in (held.find(s) for s in stops) if i >= 0), default=-1)
        if cut >= 0:
            yield Chunk(held[:cut], "stop", usage)
            pieces.close()
            return
        if finish is not None:
            yield Chunk(held, finish, usage)
            return
        if len(held) > hold:
            out, held = held[: len(held) - hold], held[len(held) - hold:]
            yield Chunk(out)


class HFGenerator(Generator):
    engine = "transformers"

    def __init__(self, folder: Path, name: str):
        super().__init__()
        import torch
        from transformers import AutoModelForCausalLM

        from trainhub.export.source import load_tokenizer

        self.name = name
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = load_tokenizer(folder)
        self.model = AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.bfloat16 if self.device == "cuda" else torch.float32).to(self.device).eval()
        self.template = self.tokenizer.chat_template if isinstance(self.tokenizer.chat_template, str) else None
        self.bos_text, self.eos_text = self.tokenizer.bos_token, self.tokenizer.eos_token
        config = self.model.config
        self.context = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", 2048)
        eos = self.model.generation_config.eos_token_id
        self.stop_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            self.stop_ids.add(self.tokenizer.eos_token_id)

    def render(self, messages: list[dict]) -> str:
        if not self.template:
            return super().render(messages)
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as err:  # jinja's TemplateError from raise_exception, and the like
            raise GenerateError(f"chat template: {err}") from None

    def _tokens(self, prompt, chat, max_tokens, temperature, top_p, seed):
        import torch

        ids = self.tokenizer(prompt, add_special_tokens=not chat)["input_ids"]
        max_tokens = max(0, min(max_tokens, self.context - len(ids)))
        if not ids or max_tokens == 0:
            yield "", "length", {"prompt_tokens": len(ids), "completion_tokens": 0}
            return
        gen = torch.Generator(device="cpu")
        gen.manual_seed(seed if seed is not None else time.time_ns() % 2**63)
        out: list[int] = []
        shown = ""
        past, step_ids = None, torch.tensor([ids], device=self.device)
        with torch.no_grad():
            for _ in range(max_tokens):
                result = self.model(step_ids, past_key_values=past, use_cache=True)
                past, logits = result.past_key_values, result.logits[0, -1].float().cpu()
                nxt = sample(logits, temperature, top_p, gen)
                if nxt in self.stop_ids:
                    yield "", "stop", {"prompt_tokens": len(ids), "completion_tokens": len(out)}
                    return
                out.append(nxt)
                text = self.tokenizer.decode(out, skip_special_tokens=False)
                if not text.endswith("\ufffd"):  # hold a character whose bytes are still arriving
                    yield text[len(shown):], None, {}
                    shown = text
                step_ids = torch.tensor([[nxt]], device=self.device)
        yield self.tokenizer.decode(out)[len(shown):], "length", {"prompt_tokens": len(ids),
                                                                  "completion_tokens": len(out)}


def sample(logits, temperature: float, top_p: float, gen) -> int:
    import torch

    if temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / temperature, -1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < top_p  # the smallest set reaching top_p
        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
    return int(torch.multinomial(probs, 1, generator=gen))


class LlamaCppGenerator(Generator):
    engine = "llama.cpp"

    def __init__(self, path: Path, name: str, n_ctx: int = 4096):
        super().__init__()
        import os

        from llama_cpp import Llama

        self.name = name
        self.llm = Llama(model_path=str(path), n_ctx=0, verbose=False, n_threads=max(1, min(8, os.cpu_count() or 1)))
        trained = int(self.llm.metadata.get(f"{self.llm.metadata['general.architecture']}.context_length", n_ctx))
        if trained > n_ctx:  # n_ctx=0 took the trained length; keep memory bounded for long-context models
            self.llm = Llama(model_path=str(path), n_ctx=n_ctx, verbose=False,
                             n_threads=max(1, min(8, os.cpu_count() or 1)))
        self.context = min(self.llm.n_ctx(), trained)  # llama.cpp pads n_ctx up (256): never past training
        self.template = self.llm.metadata.get("tokenizer.chat_template")
        self.bos_text = self._text(self.llm.token_bos())
        self.eos_text = self._text(self.llm.token_eos())

    def _text(self, token: int) -> str | None:
        if token is None or token < 0:
            return None
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _tokens(self, prompt, chat, max_tokens, temperature, top_p, seed):
        ids = self.llm.tokenize(prompt.encode("utf-8"), add_bos=not chat, special=True)
        max_tokens = max(0, min(max_tokens, self.context - len(ids)))
        if not ids or max_tokens == 0:
            yield "", "length", {"prompt_tokens": len(ids), "completion_tokens": 0}
            return
        n = 0
        for part in self.llm.create_completion(ids, max_tokens=max_tokens, temperature=temperature, top_p=top_p,
                                               top_k=0, min_p=0.0, repeat_penalty=1.0, stream=True,
                                               seed=seed if seed is not None else -1):
            choice = part["choices"][0]
            n += 1 if choice["text"] or choice["finish_reason"] is None else 0
            finish = choice["finish_reason"]
            yield choice["text"], finish, ({"prompt_tokens": len(ids), "completion_tokens": n} if finish else {})
            if finish:
                return


def load(target: Path, checkpoint: str | None = None) -> Generator:
    """The generator for a run folder, model folder or .gguf file."""
    target = Path(target)
    if target.suffix == ".gguf":
        if not target.is_file():
            raise GenerateError(f"{target}: no such file")
        try:
            import llama_cpp  # noqa: F401
        except Exception as err:
            raise GenerateError(f"a .gguf file runs in llama.cpp: llama-cpp-python is not importable ({err}); "
                                f"pip install 'trainhub[gguf]'") from None
        return LlamaCppGenerator(target, target.stem)
    from trainhub.export.source import SourceError, resolve

    try:
        with resolve(target, checkpoint) as source:  # the model is in memory before a temporary folder goes
            name = (source.run_dir or source.folder).resolve().name
            return HFGenerator(source.folder, name)
    except SourceError as err:
        raise GenerateError(str(err)) from None
