"""What a run has done so far, in one typed place: the loop's `TrainState` and its state.json form.

Everything a resumed run needs beyond the weights, the optimizer and the RNG states (checkpoint.py writes
those) lives here: the step, the tokens trained on, the data position (epoch and index in that epoch's
seeded order), the non-finite skip count, the eval bests and the loss scaler. `to_json` and `from_json`
are the only way in and out of state.json, so a field added here is saved and restored at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrainState:
    step: int = 0
    """Optimizer steps taken (updates dropped for a non-finite loss count too)."""
    tokens: int = 0
    """Tokens trained on so far, padding excluded."""
    epoch: int = 0
    """Data position: the epoch of the next micro-batch ..."""
    index: int = 0
    """... and its index in that epoch's seeded order."""
    nonfinite_skipped: int = 0
    """Updates dropped so far for a non-finite loss or gradient norm."""
    best_eval_loss: float | None = None
    last_eval_loss: float | None = None
    scaler: dict[str, Any] | None = field(default=None, repr=False)
    """The fp16 loss scaler's state_dict; None without loss scaling."""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, saved: dict[str, Any]) -> TrainState:
        """The fields this class knows from a state.json (which also holds RNG states, the job hash, ...)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in names})

    def note_eval(self, loss: float) -> None:
        self.last_eval_loss = loss

    def claim_best(self) -> bool:
        """Whether the latest eval loss is the best so far; if so, it becomes the best."""
        if self.last_eval_loss is None or (self.best_eval_loss is not None
                                           and self.last_eval_loss >= self.best_eval_loss):
            return False
        self.best_eval_loss = self.last_eval_loss
        return True
