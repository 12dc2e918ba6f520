"""Datasets as tensors, seeded epoch order, and micro-batches.

`Examples` holds either fixed-length blocks (pretraining) or variable-length
conversations (SFT). `micro_batches` walks a seeded permutation per epoch and
yields dicts ready for the model (input_ids, attention_mask, labels), right-padded
to the longest sequence of the batch; `position` says where it stands (epoch,
index) so a checkpoint can record it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from trainhub.data.chat import IGNORE, encode_conversations
from trainhub.data.parallel import map_chunks
from trainhub.data.pretrain import text_blocks
from trainhub.data.sources import DataError, load_records
from trainhub.job import DataSection


@dataclass
class Examples:
    input_ids: list[torch.Tensor]
    labels: list[torch.Tensor]
    stats: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)


def load_examples(data: DataSection, tokenizer, *, split: str = "train", seed: int = 0, method: str = "sft",
                  train_on: str = "assistant", notes: list[str] | None = None) -> Examples:
    """One split ('train' or 'eval') of the job's data as token ids and labels.

    The records come from trainhub.data.sources (read, checked, held out, weighted: see there).
    pretrain: documents joined by EOS and cut into blocks of data.max_length. sft: each conversation
    encoded with its loss mask; one longer than data.max_length is cut, left out or refused
    (data.overlong). `stats` counts everything read, skipped, truncated or dropped; the notes on
    what format auto decided are appended to `notes` (each once).
    """
    records = load_records(data, split, seed, method)
    if notes is not None:
        notes += [n for n in records.notes if n not in notes]
    stats = dict(records.stats)
    if method == "pretrain":
        blocks, block_stats = text_blocks([r.text for r in records.items], tokenizer, data.max_length)
        rows = list(blocks)
        return Examples(rows, rows, {**stats, **block_stats})
    ids_list, label_list = [], []
    over = {"truncate": "truncated", "drop": "dropped_overlong", "error": None}[data.overlong]
    stats.update({"conversations": 0, **({over: 0} if over else {}), "dropped_no_target_after_truncation": 0})
    encoded = map_chunks(functools.partial(_encode_arrays, tokenizer, train_on),  # on all cores
                         [chat.messages for chat in records.items])
    for chat, (ids, labels) in zip(records.items, encoded, strict=True):
        stats["conversations"] += 1
        if len(ids) > data.max_length:
            if over is None:
                raise DataError(f"{chat.where}: conversation is {len(ids)} tokens, over data.max_length="
                                f"{data.max_length} (data.overlong is error; truncate or drop would go on)")
            stats[over] += 1
            if over == "dropped_overlong":
                continue
            ids, labels = ids[: data.max_length], labels[: data.max_length]
        if not (labels[1:] != IGNORE).any():
            stats["dropped_no_target_after_truncation"] += 1
            continue
        ids_list.append(torch.from_numpy(ids))
        label_list.append(torch.from_numpy(labels))
    if not ids_list:
        raise DataError(f"the {split} data has no conversation left with a target token (counts: {stats})")
    stats["examples"] = len(ids_list)
    return Examples(ids_list, label_list, stats)


def _encode_arrays(tokenizer, train_on: str, conversations: list[list[dict]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """encode_conversations, as int64 arrays: a worker hands them back as raw bytes, and torch takes
    them without a copy (lists of Python ints cost more to pickle and to turn into tensors than to encode)."""
    return [(np.asarray(ids, dtype=np.int64), np.asarray(labels, dtype=np.int64))
            for ids, labels in encode_conversations(tokenizer, conversations, train_on)]


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
