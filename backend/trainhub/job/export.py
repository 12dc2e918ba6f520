"""The `export:` section: what is written when training completes, beside the checkpoints (the merged
model, GGUF files and their verification)."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from trainhub.job.base import Section

GGUF_TYPES = ("f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q4_k_m", "q4_k_s", "q3_k_m", "q2_k", "q4_0")
"""The GGUF types trainhub writes (trainhub.export.gguf_write.QUANTS says how each is made)."""
GGUFType = Literal["f32", "f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q5_k_s", "q4_k_m", "q4_k_s", "q3_k_m", "q2_k",
                   "q4_0"]


class ExportSection(Section):
    merged: bool = True
    """LoRA and QLoRA: also write the adapter merged into the base weights, as a 16-bit Hugging Face model in run_dir/final (the adapter alone always goes to run_dir/adapter). false: the adapter only. A full fine-tune always writes final/."""
    gguf: list[GGUFType] = []
    """GGUF files to write after a completed run, into run_dir/export/<name>-<type>.gguf, as `trainhub export RUN --quant TYPE` does: f32, f16, bf16 and q8_0 by trainhub's converter, the k-quants (q6_k, q5_k_m, q5_k_s, q4_k_m, q4_k_s, q3_k_m, q2_k) and q4_0 by llama.cpp's quantizer (needs pip install 'trainhub[gguf]'). Families: llama, qwen2, qwen3, gpt2. Example: [q8_0, q4_k_m]."""
    verify: bool = True
    """Load each GGUF in llama.cpp and compare it with the trained model (tokenisation, next-token log-probs, greedy text); results in run_dir/export/export.json. A failed verification fails the run's export step, not the training."""

    @model_validator(mode="after")
    def _distinct(self) -> ExportSection:
        if len(set(self.gguf)) < len(self.gguf):
            raise ValueError(f"export.gguf names a type twice: {self.gguf}")
        return self
