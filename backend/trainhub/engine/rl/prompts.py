"""The RL loop's inputs: the job's prompts, rendered and tokenized, in a seeded order; and the rewards.

Prompts are the data layer's prompt records (data/sources.py), rendered exactly as the trl backend
hands them to TRL: a string prompt is one user turn, through the tokenizer's chat template with the
generation prompt added, tokenized without special tokens added. A prompt longer than data.max_length
is dropped or refused (data.overlong drop or error; truncate is refused by the runner, as for trl).

Order: epoch e walks the prompts in a permutation seeded by (seed, e) (data.shuffle), so a run resumed
at (epoch, index) draws the same prompts as one that never stopped.

Rewards: every function of method.rewards is called as TRL calls it, fn(prompts=, completions=,
completion_ids=, trainer_state=None, **fields), completions as one assistant message each; a
completion's reward is the weighted sum, a None (does not apply) counting as nothing in the sum and
left out of that function's mean (TRL's nansum and nanmean).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import torch

from trainhub.data.sources import DataError, load_records
from trainhub.job import Job
from trainhub.rewards.load import load


@dataclass
class Prompt:
    ids: list[int]
    messages: list[dict]
    fields: dict[str, Any] = field(default_factory=dict)
    """answer and the record's other columns, for the rewards."""


@dataclass
class Prompts:
    items: list[Prompt]
    stats: dict[str, int]
    notes: list[str]


def user(content: Any) -> list[dict]:
    return [{"role": "user", "content": content}] if isinstance(content, str) else list(content)


def load_prompts(job: Job, tokenizer) -> Prompts:
    records = load_records(job.data, "train", job.seed, "grpo")
    limit, overlong = job.data.max_length, job.data.overlong
    stats = {**records.stats, "prompts": len(records.items), "dropped_overlong": 0}
    items = []
    for record in records.items:
        messages = user(record.prompt)
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) > limit:
            if overlong == "error":
                raise DataError(f"{record.where}: the prompt is {len(ids)} tokens, over data.max_length={limit} "
                                f"(data.overlong is error; drop would go on)")
            stats["dropped_overlong"] += 1
            continue
        items.append(Prompt(ids, messages, {**record.extra, "answer": record.answer}))
    if not items:
        raise DataError(f"the train data has no usable prompt left (counts: {stats})")
    stats["examples"] = len(items)
    return Prompts(items, stats, records.notes)


def draw(prompts: list[Prompt], n: int, epoch: int, index: int, seed: int, shuffle: bool):
    """(n prompts from data position (epoch, index), the next position)."""
    out = []
    while len(out) < n:
        order = list(range(len(prompts)))
        if shuffle:
            random.Random(f"prompts:{seed}:{epoch}").shuffle(order)
        take = order[index:index + n - len(out)]
        out += [prompts[i] for i in take]
        index += len(take)
        if index >= len(order):
            epoch, index = epoch + 1, 0
    return out, epoch, index


class Rewards:
    """The job's reward functions, loaded (and checked) once."""

    def __init__(self, job: Job):
        self.specs = job.method.rewards
        self.fns = [load(r.function, f"method.rewards[{i}]") for i, r in enumerate(self.specs)]
        self.names = [getattr(fn, "__name__", r.function) for fn, r in zip(self.fns, self.specs, strict=True)]
        self.pool = None
        if job.method.reward_workers:  # method.reward_workers: the calls go to worker processes (rewards/pool.py)
            from trainhub.rewards.pool import pooled

            self.pool, self.fns = pooled(self.specs, self.fns, job.method.reward_workers)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()

    def __call__(self, prompts: list[Prompt], texts: list[str],
                 completion_ids: list[list[int]]) -> tuple[torch.Tensor, dict[str, float]]:
        """(weighted reward per completion [N] float32, each function's unweighted mean by name)."""
        fields = {k: [p.fields.get(k) for p in prompts] for k in prompts[0].fields}
        completions = [[{"role": "assistant", "content": t}] for t in texts]
        total = torch.zeros(len(texts))
        means = {}
        for fn, spec, name in zip(self.fns, self.specs, self.names, strict=True):
            out = fn(prompts=[p.messages for p in prompts], completions=completions, completion_ids=completion_ids,
                     trainer_state=None, **fields)
            if len(out) != len(texts):
                raise ValueError(f"reward {spec.function} returned {len(out)} values for {len(texts)} completions")
            values = torch.tensor([math.nan if v is None else float(v) for v in out])
            total += torch.nan_to_num(values * spec.weight, nan=0.0)
            means[name] = float(values.nanmean()) if not values.isnan().all() else math.nan
        return total, means
