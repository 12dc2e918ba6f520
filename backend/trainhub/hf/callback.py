"""The common metric rows from inside a Hugging Face `Trainer`: one `TrainerCallback` that every
Trainer-based backend (trl, llamafactory, unsloth) adds to its trainer.

It writes the same rows as the native engine (metrics/rows.py) through the same writer
(metrics/log.py): `start` when training begins, a `train` row for every log the Trainer makes
(every `logging_steps`, and the last step, which the callback asks to be logged), `eval` after
each evaluation, `checkpoint` after each save, and `end` when the backend calls `end(status)`.

Where the numbers come from:
- loss, grad_norm, learning rate, epoch: the Trainer's log (its loss is already the mean over
  the steps since the previous log, as native's is).
- tokens: cumulative non-padding tokens, from the log's `num_tokens` when the trainer reports it
  (TRL's trainers do), else `state.num_input_tokens_seen` (set the Trainer's
  `include_num_input_tokens_seen="non_padding"`), else `tokens_fn()` (a backend whose trainer's
  batches have no input_ids, e.g. TRL's ORPO, counts them in its collator). tokens_per_s and mfu are over the wall time since
  the previous train row; FLOPs per token come from trainhub.metrics.flops via the model count, so
  MFU means the same for every backend.
- method quantities: the log keys TRL (and LLaMA-Factory, which reuses TRL's names) write, mapped
  onto MethodStats by METHOD_KEYS.
- checkpoints: each Trainer checkpoint gets trainhub's job.json and state.json and is committed as
  native's are (engine/checkpoint.py commit_in_place: every file fsynced, then `checkpoints/latest`
  names it, atomically), so `train --resume` works as for native (mark_checkpoint).
- a non-finite loss or gradient norm in a logged step (stop_on_nonfinite): an error row, and the
  Trainer is told to stop without saving; `failed` says why. With `nonfinite` (hf/nonfinite.py,
  train.on_nonfinite: skip) such steps' updates were dropped instead: the row's loss is null, its
  `nonfinite_skipped` counts them, and `nonfinite_limit` skipped steps in a row stop the run the same way.
- a stop request (any object with a `requested` attribute, e.g. the engine's StopFlag): the
  callback asks the Trainer to save and stop after the current step.

Depends on transformers and trainhub only (never on TRL): the llamafactory and unsloth backends
import it in their own environments. It uses the Trainer's public callback API alone, so it carries no
version guard (hf/guard.py): it runs under LLaMA-Factory's transformers 5.6 as under 5.23.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from trainhub.metrics.log import MetricLog
from trainhub.metrics.rows import CheckpointRow, EndRow, ErrorRow, EvalRow, MethodStats, StartRow, TrainRow

# Log key (without an eval_ prefix) -> MethodStats field. TRL's names; LLaMA-Factory uses the same.
METHOD_KEYS: dict[str, str] = {
    "reward": "reward_mean",
    "reward_std": "reward_std",
    "kl": "kl",
    "clip_ratio/region_mean": "clip_ratio",
    "clip_ratio": "clip_ratio",
    "completions/mean_length": "completion_length",
    "rewards/chosen": "chosen_reward",
    "rewards/rejected": "rejected_reward",
    "rewards/margins": "reward_margin",
    "rewards/accuracies": "reward_accuracy",
}


def method_stats(logs: dict[str, Any], prefix: str = "") -> MethodStats | None:
    """The method quantities in a Trainer log (keys with `prefix`, e.g. "eval_"), or None if it has none.
    Per-function rewards are logged by TRL as rewards/<name>/mean."""
    values: dict[str, Any] = {}
    rewards: dict[str, float] = {}
    for key, value in logs.items():
        if not key.startswith(prefix) or not isinstance(value, int | float):
            continue
        name = key[len(prefix):]
        if name in METHOD_KEYS:
            values.setdefault(METHOD_KEYS[name], _finite(value))
        elif name.startswith("rewards/") and name.endswith("/mean"):
            rewards[name[len("rewards/"):-len("/mean")]] = float(value)
    if not values and not rewards:
        return None
    return MethodStats(**values, rewards=rewards)


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


class MetricsCallback(TrainerCallback):
    """Writes trainhub's metric rows from a Trainer's events (see the module docstring).

    `start_fields`: what the start row says that the Trainer cannot know (backend, job, job_hash,
    precision, tokens_per_step, notes, data, resumed_from); the callback adds the step, max_steps,
    hardware and parameter counts when training begins. `seq_len`: the sequence length FLOPs per
    token are charged at (the attention term). `eval_tokens`: target tokens of the eval set.
    """

    def __init__(self, log: MetricLog, run_id: str, *, start_fields: dict[str, Any], seq_len: int,
                 eval_tokens: int = 0, stop: Any = None, stop_on_nonfinite: bool = True,
                 tokens_fn: Callable[[], int] | None = None, resumed_tokens: int = 0,
                 nonfinite: Any = None, nonfinite_limit: int = 5, resumed_skipped: int = 0,
                 clock: Callable[[], float] = time.perf_counter):
        self.log, self.run_id = log, run_id
        self.resumed_tokens = resumed_tokens
        """Tokens at the checkpoint a resumed run starts from (its state.json), 0 for a fresh run."""
        self._offset: int | None = None
        self.tokens_fn = tokens_fn
        """Cumulative trained tokens, for a trainer that reports none (see the module docstring)."""
        self.stop_on_nonfinite = stop_on_nonfinite
        self.nonfinite, self.nonfinite_limit = nonfinite, nonfinite_limit
        """A SkipNonFinite (train.on_nonfinite: skip), whose read(step) counts the steps it skipped, or None."""
        self.skipped = resumed_skipped
        self.failed: str | None = None
        """Why the run was stopped as failed (a non-finite loss or gradient norm), or None."""
        self.start_fields, self.seq_len, self.eval_tokens = start_fields, seq_len, eval_tokens
        self.stop, self.clock = stop, clock
        self.t0 = time.time()
        self.step = 0
        self.tokens = 0
        self.last_loss: float | None = None
        self.flops_token = 0.0
        self.peak: float | None = None
        self.device = None
        self._window = (0, clock())  # tokens and time at the previous train row

    # ------------------------------------------------------------------ Trainer events

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        import torch

        from trainhub.engine.device import device_facts
        from trainhub.engine.model import count_model

        self.device = torch.device(args.device) if getattr(args, "device", None) is not None else torch.device("cpu")
        facts = device_facts(self.device)
        self.peak = facts["peak_flops"]
        counts = count_model(model)
        self.flops_token = counts.flops_per_token(self.seq_len)
        self.step = state.global_step
        self.tokens = max(int(state.num_input_tokens_seen or 0), self.resumed_tokens)
        self.log.write(StartRow(
            run_id=self.run_id, step=state.global_step, hardware=facts, params_total=counts.params_total,
            params_trainable=counts.params_trainable, flops_per_token=self.flops_token, max_steps=state.max_steps,
            **self.start_fields))
        self._window = (self.tokens, self.clock())

    def on_step_end(self, args, state, control, **kwargs):
        self.step = state.global_step
        if state.global_step >= state.max_steps:
            control.should_log = True  # native logs the last step whatever log_every says; so do we
        if self.stop is not None and self.stop.requested:
            control.should_save = True
            control.should_training_stop = True
            control.should_log = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        if "loss" not in logs or any(k.startswith("eval_") for k in logs):
            return  # eval logs come through on_evaluate; the closing summary has train_loss, not loss
        if self.failed:
            return  # a log after the failing one (a log one step late, hf/deferred.py, finds it a step on)
        reported = int(logs.get("num_tokens") or state.num_input_tokens_seen or (self.tokens_fn or int)())
        if self._offset is None:  # a count below the checkpoint's restarted at resume (TRL keeps SFT/DPO/KTO's
            self._offset = self.resumed_tokens if reported < self.resumed_tokens else 0  # in memory only)
        tokens = reported + self._offset
        now = self.clock()
        n, elapsed = tokens - self._window[0], max(now - self._window[1], 1e-9)
        self._window = (tokens, now)
        self.step, self.tokens = state.global_step, tokens
        skipped_now = self.nonfinite.read(state.global_step) if self.nonfinite is not None else 0
        self.skipped += skipped_now
        # a window with a skipped step has no loss, as native's (the skipped step's loss was left out of the sum)
        self.last_loss = None if skipped_now else _finite(logs["loss"])
        grad_norm = logs.get("grad_norm")
        from trainhub.engine.device import peak_memory_gb
        from trainhub.metrics.flops import mfu

        self.log.write(TrainRow(
            run_id=self.run_id, step=state.global_step, loss=self.last_loss, lr=float(logs.get("learning_rate", 0.0)),
            grad_norm=_finite(grad_norm) if grad_norm is not None else None, tokens=tokens,
            tokens_per_s=n / elapsed, mfu=mfu(self.flops_token, n / elapsed, self.peak),
            mem_gb=peak_memory_gb(self.device), epoch=float(state.epoch or 0.0), method=method_stats(logs),
            nonfinite_skipped=self.skipped))
        if self.nonfinite is not None:
            if skipped_now:
                print(f"step {state.global_step}: {skipped_now} non-finite loss or gradient norm since the last "
                      f"row; update skipped", flush=True)
            why = f"{self.nonfinite.in_a_row} in a row reached train.nonfinite_limit" \
                if self.nonfinite.in_a_row >= self.nonfinite_limit else None
        else:
            finite = self.last_loss is not None and (grad_norm is None or _finite(grad_norm) is not None)
            why = "train.on_nonfinite is stop" if not finite and self.stop_on_nonfinite else None
        if why:
            self.failed = (f"non-finite loss or gradient at step {state.global_step} ({why}); "
                           f"the run stops without saving, the last good checkpoint is kept")
            self.log.write(ErrorRow(run_id=self.run_id, step=state.global_step, message=self.failed))
            control.should_training_stop = True
            control.should_save = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        metrics = metrics or {}
        if "eval_loss" not in metrics:
            return
        loss = float(metrics["eval_loss"])
        self.log.write(EvalRow(run_id=self.run_id, step=state.global_step, eval_loss=loss,
                               perplexity=math.exp(min(loss, 50.0)), eval_tokens=self.eval_tokens,
                               method=method_stats(metrics, "eval_")))

    def on_save(self, args, state, control, **kwargs):
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

        path = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if path.is_dir():
            mark_checkpoint(path, state.global_step, self.start_fields["job"], self.tokens, self.skipped)
        self.log.write(CheckpointRow(run_id=self.run_id, step=state.global_step, path=str(path)))

    # ------------------------------------------------------------------ called by the backend

    def checkpoint(self, path) -> None:
        """A save the backend made itself (e.g. the final model)."""
        self.log.write(CheckpointRow(run_id=self.run_id, step=self.step, path=str(path)))

    def end(self, status: str, exit_code: int | None = None) -> None:
        self.log.write(EndRow(run_id=self.run_id, step=self.step, status=status, wall_s=time.time() - self.t0,
                              tokens=self.tokens, final_loss=self.last_loss, exit_code=exit_code,
                              nonfinite_skipped=self.skipped))


def mark_checkpoint(path: Path, step: int, job: dict, tokens: int = 0, nonfinite_skipped: int = 0) -> None:
    """Make a Trainer checkpoint one that `train --resume` finds and checks like native's: the resolved
    job, the step, the tokens and skipped steps so far (as of the last train row) beside the Trainer's
    files, committed by the engine's commit (fsynced, then the `latest` pointer, atomically)."""
    from trainhub.engine.checkpoint import commit_in_place

    commit_in_place(path, step, {"tokens": tokens, "nonfinite_skipped": nonfinite_skipped}, job)


def start_fields(*, backend: str, job, precision: str, tokens_per_step: int, notes: list[str] | None = None,
                 data: dict[str, int] | None = None, resumed_from: str | None = None) -> dict[str, Any]:
    """The start row's fields that come from the job and the backend (see MetricsCallback)."""
    return {"backend": backend, "job": job.model_dump(mode="json"), "job_hash": job.hash(), "precision": precision,
            "tokens_per_step": tokens_per_step, "notes": list(notes or []), "data": dict(data or {}),
            "resumed_from": resumed_from}
