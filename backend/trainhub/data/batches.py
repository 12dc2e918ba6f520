"""Datasets as tensors, seeded epoch order, and micro-batches.

`Examples` holds either fixed-length blocks (pretraining) or variable-length
conversations (SFT). `micro_batches` walks a seeded permutation per epoch and
yields dicts ready for the model (input_ids, attention_mask, labels), right-padded
to the longest sequence of the batch; `position` says where it stands (epoch,
index) so a checkpoint can record it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from trainhub.data.chat import IGNORE, encode_conversation
from trainhub.data.pretrain import text_blocks
from trainhub.data.sources import read_conversations


@dataclass
class Examples:
    input_ids: list[torch.Tensor]
    labels: list[torch.Tensor]
    stats: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)


def load_examples(files: list[str], fmt: str, tokenizer, max_length: int, train_on: str = "assistant") -> Examples:
    if fmt == "text":
        blocks, stats = text_blocks(files, tokenizer, max_length)
        rows = list(blocks)
        return Examples(rows, rows, stats)
    ids_list, label_list = [], []
    stats = {"conversations": 0, "truncated": 0, "dropped_no_target_after_truncation": 0}
    for _where, messages in read_conversations(files):
        stats["conversations"] += 1
        ids, labels = encode_conversation(tokenizer, messages, train_on)
        if len(ids) > max_length:
            stats["truncated"] += 1
            ids, labels = ids[:max_length], labels[:max_length]
        if sum(1 for x in labels[1:] if x != IGNORE) == 0:
            stats["dropped_no_target_after_truncation"] += 1
            continue
        ids_list.append(torch.tensor(ids, dtype=torch.long))
        label_list.append(torch.tensor(labels, dtype=torch.long))
    if not ids_list:
        raise ValueError(f"{', '.join(files)}: no conversation left with a target token (see counts {stats})")
    stats["examples"] = len(ids_list)
    return Examples(ids_list, label_list, stats)


def collate(examples: Examples, index: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(examples.input_ids[i]) for i in index)
    ids = torch.full((len(index), width), pad_id, dtype=torch.long)
    labels = torch.full((len(index), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(index), width), dtype=torch.long)
    for row, i in enumerate(index):
        n = len(examples.input_ids[i])
        ids[row, :n] = examples.input_ids[i]
        labels[row, :n] = examples.labels[i]
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


@dataclass
class Position:
    epoch: int = 0
    index: int = 0
    """Examples of the current epoch's order already consumed."""


def micro_batches(examples: Examples, batch_size: int, *, seed: int, shuffle: bool, pad_id: int,
                  position: Position) -> Iterator[dict[str, torch.Tensor]]:
    """Micro-batches forever, epoch after epoch; an incomplete last batch of an epoch is skipped."""
    if len(examples) < batch_size:
        raise ValueError(f"{len(examples)} training examples, fewer than one micro-batch of {batch_size}")
    while True:
        order = epoch_order(len(examples), seed, position.epoch, shuffle)
        while position.index + batch_size <= len(order):
            index = order[position.index: position.index + batch_size]
            position.index += batch_size
            yield collate(examples, index, pad_id)
        position.epoch += 1
        position.index = 0


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    if not shuffle:
        return list(range(n))
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def count_targets(batch: dict[str, torch.Tensor]) -> int:
    """Target tokens after the model's one-position shift."""
    return int((batch["labels"][:, 1:] != IGNORE).sum())
