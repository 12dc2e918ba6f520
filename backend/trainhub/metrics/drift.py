"""Loss drift between two runs of the same job: a candidate (fp8, a new kernel, ...) against its reference
(bf16), read from their metric logs.

    drift = loss_drift(read_rows(ref / "metrics.jsonl"), read_rows(fp8 / "metrics.jsonl"), window=20)
    drift.final_rel      # relative error of the last window's mean loss: (cand - ref) / ref
    python -m trainhub.metrics.drift REF_RUN_DIR CAND_RUN_DIR [--window 20] [--tolerance 0.005]   # exit 1 when over

Why windows. A single step's loss carries the batch's noise (a few percent on a small model), which would
drown a 0.25% drift; both curves are averaged over the same `window` steps before they are compared, and
only steps both logs hold count. Published anchor: DeepSeek-V3's block-wise FP8 kept the relative loss
error under 0.25% against bf16; the issue's bar for our recipes is 0.5% on the final validation loss,
which the eval rows give (`final_eval_rel`) when both runs evaluated.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from trainhub.metrics.log import read_rows


@dataclass(frozen=True)
class Drift:
    steps: int
    """Steps both logs hold a finite loss for."""
    window: int
    rel: list[tuple[int, float]]
    """(last step of each window, relative error of the window's mean loss), in step order."""
    final_eval_rel: float | None
    """Relative error of the last eval loss both runs logged at the same step; None without one."""

    @property
    def final_rel(self) -> float:
        return self.rel[-1][1]

    @property
    def max_abs_rel(self) -> float:
        return max(abs(r) for _, r in self.rel)

    def line(self) -> str:
        ev = "n/a" if self.final_eval_rel is None else f"{self.final_eval_rel:+.3%}"
        return (f"{self.steps} common steps, window {self.window}: final {self.final_rel:+.3%}, "
                f"max |rel| {self.max_abs_rel:.3%}, final eval {ev}")


def _losses(rows: list, event: str, key: str) -> dict[int, float]:
    out = {}
    for r in rows:
        value = getattr(r, key, None) if r.event == event else None
        if value is not None and value == value and abs(value) != float("inf"):
            out[r.step] = value
    return out


def loss_drift(reference: list, candidate: list, *, window: int = 20) -> Drift:
    """Windowed relative loss error of `candidate` against `reference` (rows as read_rows gives them)."""
    if window < 1:
        raise ValueError(f"window must be at least 1, not {window}")
    ref, cand = _losses(reference, "train", "loss"), _losses(candidate, "train", "loss")
    steps = sorted(set(ref) & set(cand))
    if len(steps) < window:
        raise ValueError(f"the two logs share {len(steps)} steps with a finite loss; window {window} needs at least "
                         f"that many (same log_every in both runs?)")
    rel = []
    for start in range(0, len(steps) - window + 1, window):
        chunk = steps[start:start + window]
        r = sum(ref[s] for s in chunk) / window
        c = sum(cand[s] for s in chunk) / window
        rel.append((chunk[-1], (c - r) / r))
    ref_eval, cand_eval = _losses(reference, "eval", "eval_loss"), _losses(candidate, "eval", "eval_loss")
    both = sorted(set(ref_eval) & set(cand_eval))
    final_eval = (cand_eval[both[-1]] - ref_eval[both[-1]]) / ref_eval[both[-1]] if both else None
    return Drift(steps=len(steps), window=window, rel=rel, final_eval_rel=final_eval)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainhub.metrics.drift", description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path, help="run folder (or metrics.jsonl) of the reference run")
    parser.add_argument("candidate", type=Path, help="run folder (or metrics.jsonl) of the run compared")
    parser.add_argument("--window", type=int, default=20, help="steps averaged per point (default 20)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="exit 1 when the final window's |relative error| exceeds this (e.g. 0.005)")
    args = parser.parse_args(argv)
    logs = [p / "metrics.jsonl" if p.is_dir() else p for p in (args.reference, args.candidate)]
    drift = loss_drift(read_rows(logs[0]), read_rows(logs[1]), window=args.window)
    print(f"{logs[1]} vs {logs[0]}: {drift.line()}")
    if args.tolerance is not None and abs(drift.final_rel) > args.tolerance:
        print(f"drift {drift.final_rel:+.3%} exceeds the tolerance {args.tolerance:.3%}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
