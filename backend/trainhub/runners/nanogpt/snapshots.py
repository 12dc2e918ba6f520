"""nanoGPT's one ckpt.pt, kept as trainhub checkpoints: `checkpoints/step-N/` with ckpt.pt, state.json
and job.json, written whole or not at all (engine.checkpoint.commit_checkpoint), `latest` and `best`
pointers and train.keep_last, so `--resume` and `model.path` work as for every backend.

nanoGPT overwrites out_dir/ckpt.pt at every evaluation. When a save has finished (its `iter` line
follows, or the process has ended) the file is moved (a rename: no copy) into a new checkpoint folder.
The step is read from the file itself (iter_num), never assumed from the log line: if this reader lags
so far behind that nanoGPT is already writing its next save, the file is claimed only once it loads
whole, under the step it holds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from trainhub.engine.checkpoint import commit_checkpoint
from trainhub.export.nanogpt import load_checkpoint

CKPT = "ckpt.pt"


class Snapshots:
    def __init__(self, run_dir: Path, job: dict, job_hash: str, keep_last: int, tokens_per_step: int,
                 best_eval_loss: float | None = None, skip_step: int | None = None):
        self.run_dir, self.job, self.job_hash, self.keep_last = run_dir, job, job_hash, keep_last
        self.tokens_per_step = tokens_per_step
        self.best = best_eval_loss
        self.skip_step = skip_step  # a resumed run saves its first step again: nothing new
        self.evals: dict[int, float] = {}
        self.latest: tuple[int, Path] | None = None

    def eval_loss(self, step: int, loss: float) -> None:
        self.evals[step] = loss

    def claim(self, alive: Callable[[], bool]) -> tuple[int, Path] | None:
        """Move a finished out_dir/ckpt.pt into checkpoints/; (step, folder), or None if there is none.
        While `alive()`, a file that does not load yet is waited for (it is still being written)."""
        source = self.run_dir / CKPT
        if not source.is_file():
            return None
        staged = self.run_dir / f".{CKPT}.claimed"
        os.replace(source, staged)
        step = self._iter_num(staged, alive)
        if step is None or step == self.skip_step:
            staged.unlink(missing_ok=True)
            return None
        loss = self.evals.get(step)
        is_best = loss is not None and (self.best is None or loss < self.best)
        if is_best:
            self.best = loss
        state = {"backend": "nanogpt", "tokens": step * self.tokens_per_step, "last_eval_loss": loss,
                 "best_eval_loss": self.best, "job_hash": self.job_hash}
        folder = commit_checkpoint(self.run_dir, step, lambda tmp: os.replace(staged, tmp / CKPT), state,
                                   self.job, self.keep_last, is_best)
        self.latest = (step, folder)
        return self.latest

    @staticmethod
    def _iter_num(path: Path, alive: Callable[[], bool]) -> int | None:
        while True:
            try:
                return int(load_checkpoint(path)["iter_num"])
            except Exception:
                if not alive():  # the writer is gone and the file still does not load: a torn save
                    try:
                        return int(load_checkpoint(path)["iter_num"])
                    except Exception:
                        return None
                time.sleep(0.5)
