"""Spreading data work over the machine's cores.

`map_chunks(fn, items)` = `fn(items)`, computed by worker processes over slices of `items` and
joined in order, so the result does not depend on the number of workers. Small inputs stay in
this process (a pool costs more than it saves below a few thousand items).

Workers: every core this process may use, or TRAINHUB_DATA_WORKERS (1 turns the pool off).
`fn` (with the tokenizer it holds) goes to each worker once, when it starts, never per chunk:
forked workers inherit it without pickling; after CUDA has been initialised a fork is unsafe,
and they are spawned instead, receiving it pickled. The tokenizers library's own
threads are turned off in the workers (TOKENIZERS_PARALLELISM=false while they start): the
processes already use the cores, and a forked tokenizer with live threads can deadlock.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MIN_ITEMS = 4096
"""Below this many items the work stays in this process."""
CHUNK = 1024


def workers() -> int:
    env = os.environ.get("TRAINHUB_DATA_WORKERS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"TRAINHUB_DATA_WORKERS must be a whole number >= 1, not {env!r}")
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def map_chunks(fn: Callable[[Sequence[T]], list[R]], items: Sequence[T]) -> list[R]:
    n = workers()
    if n <= 1 or len(items) < MIN_ITEMS:
        return fn(items)
    chunks = [items[i: i + CHUNK] for i in range(0, len(items), CHUNK)]
    out: list[R] = []
    with _pool(min(n, len(chunks)), fn) as pool:
        for part in pool.imap(_run, chunks):
            out.extend(part)
    return out


_fn: Callable | None = None


def _start(fn: Callable) -> None:
    global _fn
    _fn = fn


def _run(chunk):
    assert _fn is not None
    return _fn(chunk)


def _pool(n: int, fn: Callable):
    import torch

    method = "spawn" if torch.cuda.is_initialized() else "fork"
    old = os.environ.get("TOKENIZERS_PARALLELISM")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        return multiprocessing.get_context(method).Pool(n, initializer=_start, initargs=(fn,))
    finally:
        if old is None:
            os.environ.pop("TOKENIZERS_PARALLELISM", None)
        else:
            os.environ["TOKENIZERS_PARALLELISM"] = old
