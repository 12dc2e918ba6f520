"""The final model of a run as a Hugging Face folder: the one save every trainhub-process backend uses
(native, trl, unsloth).

Full fine-tuning and pretraining: run_dir/final holds the weights (safetensors), config and tokenizer.
LoRA and QLoRA: the adapter goes to run_dir/adapter; with export.merged (the default) it is also merged
into the base weights and written to run_dir/final as a plain model; without it the adapter (with the
tokenizer) is the final model.

The folder is made ready for serving engines (vLLM, SGLang, TGI) that load it with whichever
transformers they pin, 4.x included (`make_ready`):
  - generation_config.json names the EOS (the chat template's end of turn) and the pad token, so
    generation stops at the end of an answer;
  - tokenizer_config.json carries the chat template itself (transformers 5 writes it only to
    chat_template.jinja, which transformers < 4.50 does not read), the special tokens under
    `additional_special_tokens` (transformers 5 writes `extra_special_tokens` as a list, which 4.x
    reads as a dict and fails on), and `tokenizer_class: PreTrainedTokenizerFast` (5's
    `TokenizersBackend` does not exist in 4.x). transformers 5 reads all three the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path


def adapter_save_kwargs(model) -> dict:
    """A LoRA model's save: the adapter only. trainhub never resizes the embedding, so peft need not compare the
    vocabulary with the base model's config to decide whether to save the embedding too (it would load the base
    config through the config's class, which trainhub's own model does not offer)."""
    return {"save_embedding_layers": False} if hasattr(model, "peft_config") else {}


def save_final(model, tokenizer, run_dir: Path, job, merge: Callable[[Path], None] | None = None) -> Path:
    """Write the final model; returns the folder that holds it. `merge(final)`: how the backend writes the
    merged model into `final` where peft's merge_and_unload cannot (Unsloth's QLoRA: a 4-bit base is
    dequantized to 16 bits first); by default the adapter is merged with peft and saved."""
    final = run_dir / "final"
    if job.adapter.type in ("lora", "qlora"):
        model.save_pretrained(run_dir / "adapter", safe_serialization=True, **adapter_save_kwargs(model))
        if not job.export.merged:
            tokenizer.save_pretrained(run_dir / "adapter")
            return run_dir / "adapter"
        if merge is not None:
            merge(final)
            make_ready(final)
            return final
        model = model.merge_and_unload()
    model.save_pretrained(final, safe_serialization=True)
    tokenizer.save_pretrained(final)
    make_ready(final)
    return final


def make_ready(folder: Path) -> None:
    """Rewrite the tokenizer and generation configs of a saved model folder for every serving engine."""
    folder = Path(folder)
    path = folder / "tokenizer_config.json"
    if path.is_file():
        config = json.loads(path.read_text())
        if config.get("tokenizer_class") == "TokenizersBackend":
            config["tokenizer_class"] = "PreTrainedTokenizerFast"
        extra = config.pop("extra_special_tokens", None)
        if isinstance(extra, list):
            config["additional_special_tokens"] = list(dict.fromkeys(config.get("additional_special_tokens", []) + extra))
        elif extra:  # the 4.x meaning (named extra tokens): keep it
            config["extra_special_tokens"] = extra
        template = folder / "chat_template.jinja"
        if template.is_file() and not config.get("chat_template"):
            config["chat_template"] = template.read_text()
        path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    generation = folder / "generation_config.json"
    model_config = folder / "config.json"
    if model_config.is_file():
        cfg = json.loads(model_config.read_text())
        gen = json.loads(generation.read_text()) if generation.is_file() else {}
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if gen.get(key) is None and cfg.get(key) is not None:
                gen[key] = cfg[key]
        generation.write_text(json.dumps(gen, indent=2) + "\n")
