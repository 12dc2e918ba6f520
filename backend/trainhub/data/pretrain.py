"""Pretraining examples: documents tokenized, joined with EOS, cut into fixed-length blocks.

Every block is `max_length` tokens and every position is a target (labels = input ids;
the model shifts them). The tail that does not fill a block is dropped and counted.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch


def text_blocks(texts: Iterable[str], tokenizer, max_length: int) -> tuple[torch.Tensor, dict[str, int]]:
    """A [num_blocks, max_length] int64 tensor and counts for the start row."""
    eos = tokenizer.eos_token_id
    ids: list[int] = []
    docs = 0
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        docs += 1
        if len(batch) == 1024:
            ids.extend(_encode(tokenizer, batch, eos))
            batch = []
    if batch:
        ids.extend(_encode(tokenizer, batch, eos))
    n_blocks = len(ids) // max_length
    if n_blocks == 0:
        raise ValueError(f"{len(ids)} tokens in all, fewer than one block of data.max_length={max_length}")
    blocks = torch.tensor(ids[: n_blocks * max_length], dtype=torch.long).view(n_blocks, max_length)
    return blocks, {"documents": docs, "tokens": len(ids), "blocks": n_blocks,
                    "tail_tokens_dropped": len(ids) - n_blocks * max_length}


def _encode(tokenizer, texts: list[str], eos: int) -> list[int]:
    out: list[int] = []
    for seq in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        out.extend(seq)
        out.append(eos)
    return out
