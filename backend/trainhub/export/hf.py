"""The final model of a run as a Hugging Face folder: the one save every trainhub-process backend uses
(native, trl, unsloth).

Full fine-tuning and pretraining: run_dir/final holds the weights (safetensors), config and tokenizer.
LoRA and QLoRA: the adapter goes to run_dir/adapter; with export.merged (the default) it is also merged
into the base weights and written to run_dir/final as a plain model; without it the adapter (with the
tokenizer) is the final model.
"""

from __future__ import annotations

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
            return final
        model = model.merge_and_unload()
    model.save_pretrained(final, safe_serialization=True)
    tokenizer.save_pretrained(final)
    return final
