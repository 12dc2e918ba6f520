"""The job's data, through trainhub's data layer, in the shapes TRL's trainers take.

Records are read, checked, held out and weighted by trainhub.data.sources; conversations are
rendered by the tokenizer's chat template as trainhub set it (trainhub.data.templates); loss masks
come from trainhub.data.chat. What each trainer gets:

    sft        pre-tokenized rows {input_ids, labels}: trainhub's ids and assistant-only labels
               (SFTTrainer uses a labels column as it is), from the same cached dataset as native.
    dpo, orpo  conversational rows {prompt, chosen, rejected}: the trainers tokenize pairs
    kto        themselves (with the same chat template); KTO gets each pair as two unpaired rows
               {prompt, completion, label}: prompt + chosen desirable, prompt + rejected undesirable.
    grpo       conversational rows {prompt, answer, <other fields>}: the trainer renders the prompt
               with the chat template and generates; the other fields reach the reward functions.

A string prompt is one user turn and a string answer one assistant turn, so every method renders
through the chat template. Before a preference pair is handed over, trainhub encodes both
conversations with its own masks: that checks the template (turns concatenate, answers end with
EOS) and measures them for data.overlong (truncate: TRL cuts at max_length keeping the start, as
native does; drop; error). A GRPO prompt longer than data.max_length is dropped or refused
(data.overlong drop or error; the runner refuses truncate, which cannot apply to a prompt the
trainer renders).

The collators the trainers get instead of their own are here too (`method_collator`): SFT rows padded
by trainhub (PadCollator), ORPO's pairs counted as they are padded (CountingCollator).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trainhub.data.chat import IGNORE, encode_conversations
from trainhub.data.formats import PreferencePair, PromptRecord
from trainhub.data.sources import DataError, load_records
from trainhub.job import Job


@dataclass
class TrlData:
    train: Any
    """A datasets.Dataset in the method's shape."""
    eval: Any | None
    stats: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    eval_tokens: int = 0
    """Target tokens of the eval rows (what EvalRow.eval_tokens reports)."""


def user(content: Any) -> list[dict]:
    return [{"role": "user", "content": content}] if isinstance(content, str) else list(content)


def assistant(content: Any) -> list[dict]:
    return [{"role": "assistant", "content": content}] if isinstance(content, str) else list(content)


def build(job: Job, tokenizer) -> TrlData:
    from datasets import Dataset

    method = job.method.type
    splits, stats, notes, eval_tokens = {}, {}, [], 0
    for split in ("train", "eval") if job.data.has_eval else ("train",):
        if method == "sft":
            rows, counts, split_notes, targets = _sft(job, tokenizer, split)
        elif method == "grpo":
            rows, counts, split_notes, targets = _prompts(job, tokenizer, split)
        else:
            rows, counts, split_notes, targets = _pairs(job, tokenizer, split)
        if split == "eval" and job.train.eval_batches is not None:
            keep = job.train.eval_batches * job.train.micro_batch_size
            rows, targets = rows[:keep], targets[:keep]
        if not rows:
            raise DataError(f"the {split} data has no usable record left (counts: {counts})")
        splits[split] = Dataset.from_list(rows)
        stats.update({f"{split}_{k}": v for k, v in counts.items()})
        notes += [n for n in split_notes if n not in notes]
        eval_tokens = sum(targets) if split == "eval" else eval_tokens
    return TrlData(splits["train"], splits.get("eval"), stats, notes, eval_tokens)


def _sft(job: Job, tokenizer, split: str):
    from trainhub.data.dataset import build_datasets

    data = build_datasets(job, tokenizer)  # the same (cached) examples the native engine trains on
    examples = data.train if split == "train" else data.eval
    rows = [{"input_ids": ids.tolist(), "labels": labels.tolist()}
            for ids, labels in zip(examples.input_ids, examples.labels, strict=True)]
    targets = [int((labels[1:] != IGNORE).sum()) for labels in examples.labels]
    return rows, dict(examples.stats), data.notes, targets


def _pairs(job: Job, tokenizer, split: str):
    records = load_records(job.data, split, job.seed, job.method.type)
    pairs: list[PreferencePair] = records.items
    conversations = []
    for pair in pairs:
        prompt = user(pair.prompt)
        conversations += [prompt + assistant(pair.chosen), prompt + assistant(pair.rejected)]
    encoded = encode_conversations(tokenizer, conversations)  # checks the template; raises TemplateError
    limit, overlong = job.data.max_length, job.data.overlong
    counts = {**records.stats, "pairs": len(pairs), "truncated": 0, "dropped_overlong": 0}
    rows, targets = [], []
    for i, pair in enumerate(pairs):
        (chosen_ids, chosen_labels), (rejected_ids, rejected_labels) = encoded[2 * i], encoded[2 * i + 1]
        longest = max(len(chosen_ids), len(rejected_ids))
        if longest > limit:
            if overlong == "error":
                raise DataError(f"{pair.where}: the pair is {longest} tokens, over data.max_length={limit} "
                                f"(data.overlong is error; truncate or drop would go on)")
            counts["truncated" if overlong == "truncate" else "dropped_overlong"] += 1
            if overlong == "drop":
                continue
        chosen_n, rejected_n = (sum(1 for x in labels[1:limit] if x != IGNORE)
                                for labels in (chosen_labels, rejected_labels))
        prompt = user(pair.prompt)
        if job.method.type == "kto":
            rows.append({"prompt": prompt, "completion": assistant(pair.chosen), "label": True})
            rows.append({"prompt": prompt, "completion": assistant(pair.rejected), "label": False})
            targets += [chosen_n, rejected_n]
        else:
            rows.append({"prompt": prompt, "chosen": assistant(pair.chosen), "rejected": assistant(pair.rejected)})
            targets.append(chosen_n + rejected_n)
    counts["examples"] = len(rows)
    return rows, counts, records.notes, targets


def _prompts(job: Job, tokenizer, split: str):
    records = load_records(job.data, split, job.seed, "grpo")
    items: list[PromptRecord] = records.items
    limit, overlong = job.data.max_length, job.data.overlong
    counts = {**records.stats, "prompts": len(items), "dropped_overlong": 0}
    rendered = [tokenizer.apply_chat_template(user(r.prompt), tokenize=False, add_generation_prompt=True)
                for r in items]
    lengths = [len(ids) for ids in tokenizer(rendered, add_special_tokens=False)["input_ids"]] if items else []
    rows = []
    for record, n in zip(items, lengths, strict=True):
        if n > limit:
            if overlong == "error":
                raise DataError(f"{record.where}: the prompt is {n} tokens, over data.max_length={limit} "
                                f"(data.overlong is error; drop would go on)")
            counts["dropped_overlong"] += 1
            continue
        rows.append({**record.extra, "prompt": user(record.prompt), "answer": record.answer})
    counts["examples"] = len(rows)
    return rows, counts, records.notes, [0] * len(rows)


def method_collator(job: Job, tokenizer):
    """(collator, tokens_fn) the method's trainer gets instead of its own, each None where it keeps its own:
    SFT, trainhub's ids and labels padded without the tokenizer (PadCollator); ORPO, TRL's pair collator
    counting what it pads, since its batches hold no input_ids and the Trainer counts no tokens."""
    if job.method.type == "sft":
        return PadCollator(tokenizer.pad_token_id), None
    if job.method.type == "orpo":
        from trl.experimental.utils import DPODataCollatorWithPadding

        counter = CountingCollator(DPODataCollatorWithPadding(pad_token_id=tokenizer.pad_token_id,
                                                              is_encoder_decoder=False))
        return counter, lambda: counter.tokens
    return None, None


class CountingCollator:
    """A collator, unchanged, that also counts the non-padding tokens of what it collates: the sum of the
    attention masks it returns (a pair's chosen and rejected sequences each hold the prompt). For ORPO,
    whose pair batches hold no input_ids, so its trainer counts no tokens itself."""

    MASKS = ("attention_mask", "chosen_attention_mask", "rejected_attention_mask")

    def __init__(self, collate):
        self.collate, self.tokens = collate, 0

    def __call__(self, features):
        batch = self.collate(features)
        self.tokens += sum(int(batch[k].sum()) for k in self.MASKS if k in batch)
        return batch


class PadCollator:
    """Pre-tokenized SFT rows {input_ids, labels} -> right-padded int64 tensors: input_ids (pad_id), labels
    (-100 past each row) and attention_mask.

    What transformers' DataCollatorForSeq2Seq gives for these rows (the collator Unsloth's SFTTrainer picks),
    without the tokenizer's pad(), which walks Python lists: 4 rows of 2,048 tokens took 10.5 ms there and
    1.8 ms here (this 2-core machine; research/results/unsloth.md). On a GPU it runs in the dataloader's
    worker processes (translate.DATALOADER_WORKERS), so it keeps no state: a count kept here would stay in
    the worker."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features):
        import numpy as np
        import torch

        from trainhub.data.chat import IGNORE

        width = max(len(f["input_ids"]) for f in features)
        ids = np.full((len(features), width), self.pad_id, dtype=np.int64)
        labels = np.full((len(features), width), IGNORE, dtype=np.int64)
        mask = np.zeros((len(features), width), dtype=np.int64)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = f["input_ids"], f["labels"], 1
        return {"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels),
                "attention_mask": torch.from_numpy(mask)}
