"""Reward functions run in worker processes: `method.reward_workers: N` (GRPO, native and trl alike).

A slow reward (one that runs the completion's code, calls a parser or a checker) holds up every step while
the GPU waits: the rollout's completions are scored one call per reward function, in the training process.
With N workers each call's batch is cut into N contiguous slices, each slice scored by one worker, and the
values put back in order, so a reward returns the same list it would in-process (tests/unit/test_reward_pool.py).

- Workers are spawned processes (never forked from a process that holds CUDA), started once per run, each
  importing the job's reward functions by their specs (`package.module:function` or `file.py:function`,
  relative to the working directory, as the training process loads them).
- What a reward is called with travels by pickle: prompts, completions, completion_ids, the prompt records'
  fields, and trainer_state (None on native; TRL's TrainerState).
- A worker's error is raised in the training process, as an in-process error is.
- Workers ignore SIGINT and SIGTERM (the training process owns stopping) and exit when it is gone.

`PooledReward` is a callable with the reward function's own name and signature of use (keyword arguments),
so TRL's GRPOTrainer takes it as one of its reward_funcs and logs it under the same name.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

_FUNCS: list[Callable] = []
"""In a worker: the job's reward functions, by index (_init loads them)."""


def _init(specs: list[str]) -> None:
    import signal

    from trainhub.rewards.load import load

    # Ctrl-C and a stop reach the whole process group; the training process decides when to stop (it finishes
    # its step and saves), so a worker must not die under a call. Orphaned, a worker exits on its closed pipe.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    _FUNCS[:] = [load(spec, f"method.rewards[{i}]") for i, spec in enumerate(specs)]


def _score(index: int, kwargs: dict[str, Any]) -> list:
    return list(_FUNCS[index](**kwargs))


class RewardPool:
    """N worker processes that score slices of a reward call (module docstring)."""

    def __init__(self, specs: list[str], workers: int):
        self.specs, self.workers = list(specs), workers
        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init, initargs=(self.specs,))

    def __call__(self, index: int, **kwargs) -> list:
        """Reward function `index` on this batch, in `workers` slices; its values in the batch's order."""
        n = len(kwargs["completions"])
        bounds = [n * i // self.workers for i in range(self.workers + 1)]
        parts = [(lo, hi) for lo, hi in zip(bounds, bounds[1:], strict=False) if hi > lo]

        def part(lo: int, hi: int) -> dict:  # per-completion lists sliced; the rest (trainer_state) whole
            return {k: v[lo:hi] if isinstance(v, list | tuple) and len(v) == n else v for k, v in kwargs.items()}

        futures = [self._pool.submit(_score, index, part(lo, hi)) for lo, hi in parts]
        out: list = []
        for (lo, hi), future in zip(parts, futures, strict=True):
            values = future.result()
            if len(values) != hi - lo:
                raise ValueError(f"reward {self.specs[index]} returned {len(values)} values for {hi - lo} "
                                 "completions (in a reward worker)")
            out.extend(values)
        return out

    def wrap(self, index: int, name: str) -> PooledReward:
        return PooledReward(self, index, name)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class PooledReward:
    """Reward function `index` through the pool, under the function's own name (TRL logs rewards by name)."""

    def __init__(self, pool: RewardPool, index: int, name: str):
        self.pool, self.index, self.__name__ = pool, index, name

    def __call__(self, **kwargs) -> list:
        return self.pool(self.index, **kwargs)


def pooled(specs: list, funcs: list[Callable], workers: int) -> tuple[RewardPool, list[PooledReward]]:
    """The job's rewards (method.rewards, already loaded here as `funcs`) through a pool of `workers`: the pool
    and one PooledReward per function, named as the function (or its spec when it has no name)."""
    pool = RewardPool([r.function for r in specs], workers)
    names = [getattr(fn, "__name__", r.function) for fn, r in zip(funcs, specs, strict=True)]
    return pool, [pool.wrap(i, name) for i, name in enumerate(names)]
