"""train.loss_watch: a divergence watch on the train loss, against the run's own recent rows.

A loss that climbs away from where the run has been (an fp8 recipe drifting, a learning rate too high, a bad
stretch of data) shows in the train rows long before the run is wasted. The baseline is robust: the median of
the last `window` rows that were not high, and their spread as 1.4826 x the median absolute deviation (the
standard deviation's estimate for normal noise, unmoved by the odd spike), floored at 1% of the baseline. A
row more than `sigma` spreads above the baseline is high and stays out of the baseline; `patience` high rows
in a row are a divergence, said once (a normal row ends it). A curve that only falls never trips it: the watch
looks up only. Non-finite losses are train.on_nonfinite's to handle, not the watch's.

    watch = Watch(job.train.loss_watch)
    message = watch.check(step, row.loss)    # None, or the one-line verdict the loop warns or stops with
"""

from __future__ import annotations

import math
import statistics
from collections import deque

from trainhub.job import LossWatch

MAD_TO_STD = 1.4826
"""The median absolute deviation times this estimates the standard deviation of normal noise."""
SPREAD_FLOOR = 0.01
"""The spread is at least this fraction of the baseline."""


class LossDiverged(RuntimeError):
    """train.loss_watch action stop: the loop wrote the error row; the run ends with exit 1."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


class Watch:
    def __init__(self, spec: LossWatch):
        self.spec = spec
        self.normal: deque[float] = deque(maxlen=spec.window)
        self.high = 0
        self.said = False

    def check(self, step: int, loss: float | None) -> str | None:
        """Take one train row's loss; the verdict when this row makes a divergence, else None."""
        if loss is None or not math.isfinite(loss):
            return None
        if len(self.normal) < self.spec.window:
            self.normal.append(loss)
            return None
        base = statistics.median(self.normal)
        spread = max(MAD_TO_STD * statistics.median(abs(x - base) for x in self.normal), SPREAD_FLOOR * abs(base))
        if loss <= base + self.spec.sigma * spread:
            self.high, self.said = 0, False
            self.normal.append(loss)
            return None
        self.high += 1
        if self.high < self.spec.patience or self.said:
            return None
        self.said = True
        return (f"loss diverging: {loss:.4g} at step {step} is {(loss - base) / spread:.1f} spreads above the median "
                f"{base:.4g} of the last {self.spec.window} rows, {self.high} rows in a row (train.loss_watch: "
                f"sigma {self.spec.sigma:g}, patience {self.spec.patience})")
