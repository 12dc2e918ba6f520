"""A Trainer's log one step late (hf/deferred.py), on a plain transformers Trainer on the CPU:
the rows are the ones the Trainer's own log gives, each written after the next step has run, and a
save, the last step and a non-finite loss are not left waiting."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from transformers import TrainerCallback

from tests.integration.test_hf_callback import _job, _trainer
from trainhub.hf.callback import MetricsCallback, start_fields
from trainhub.hf.deferred import DeferredLog, defer_logs
from trainhub.hf.tokens import count_trained_tokens
from trainhub.metrics import read_rows
from trainhub.metrics.log import MetricLog


class _Seen(TrainerCallback):
    """At each log: the step it is for, and how many micro-batches the trainer had taken by then."""

    def __init__(self, calls):
        self.calls, self.at_log = calls, []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if "loss" in (logs or {}):
            self.at_log.append((state.global_step, self.calls[0]))


def _run(tmp_path, deferred: bool, max_steps=7, save_steps=4, poison_step=None):
    log = MetricLog(tmp_path / "metrics.jsonl")
    cb = MetricsCallback(log, "d", start_fields=start_fields(backend="t", job=_job(), precision="fp32",
                                                             tokens_per_step=64), seq_len=16)
    trainer = _trainer(tmp_path, cb, max_steps=max_steps, logging_steps=1, save_steps=save_steps, tokens_seen="no")
    cb.tokens_fn = count_trained_tokens(trainer)
    calls = [0]
    inner_step, inner_loss = trainer.training_step, trainer.compute_loss

    def training_step(*args, **kwargs):
        calls[0] += 1
        return inner_step(*args, **kwargs)

    def compute_loss(model, inputs, *args, **kwargs):
        loss = inner_loss(model, inputs, *args, **kwargs)
        if poison_step is not None and trainer.state.global_step + 1 == poison_step:
            loss = loss * float("nan")
        return loss

    trainer.training_step, trainer.compute_loss = training_step, compute_loss
    seen = _Seen(calls)
    trainer.add_callback(seen)
    lag = DeferredLog(trainer, tokens=cb.tokens_fn.peek) if deferred else None
    trainer.train()
    cb.end("failed" if cb.failed else "completed")
    log.close()
    return read_rows(tmp_path / "metrics.jsonl"), trainer, seen, lag


def _train_rows(rows):
    return [(r.step, r.loss, r.grad_norm, r.lr, r.tokens, r.epoch) for r in rows if r.event == "train"]


def test_rows_are_the_trainers_own(tmp_path):
    plain, t1, _, _ = _run(tmp_path / "plain", deferred=False)
    late, t2, seen, lag = _run(tmp_path / "late", deferred=True)
    assert _train_rows(late) == _train_rows(plain)  # same loss, grad norm, lr, tokens and epoch, step by step
    assert [r.step for r in late if r.event == "train"] == list(range(1, 8))
    assert [r.tokens for r in late if r.event == "train"] == [64 * k for k in range(1, 8)]
    assert [r.event for r in late] == [r.event for r in plain]  # checkpoint-4 right after step 4's row
    assert [r.step for r in late if r.event == "checkpoint"] == [4, 7]  # save_steps, and the end
    def history(trainer):  # all but the timings and the count the deferred log adds
        return [{k: v for k, v in h.items() if k != "num_tokens" and not k.endswith(("_runtime", "_per_second"))}
                for h in trainer.state.log_history]

    assert history(t2) == history(t1)  # the same log, the closing train_loss (over every step) included
    # steps 1, 2, 3, 5, 6 were written after the next step's micro-batch; 4 (a save) and 7 (the last) at once
    assert lag.deferred == 5
    assert seen.at_log == [(1, 2), (2, 3), (3, 4), (4, 4), (5, 6), (6, 7), (7, 7)]


def test_a_non_finite_loss_stops_the_run_before_the_next_save(tmp_path):
    rows, trainer, _, _ = _run(tmp_path, deferred=True, max_steps=7, save_steps=4, poison_step=3)
    train = [r for r in rows if r.event == "train"]
    assert [r.step for r in train] == [1, 2, 3] and train[2].loss is None and math.isfinite(train[1].loss)
    errors = [r for r in rows if r.event == "error"]
    assert len(errors) == 1 and "step 3" in errors[0].message
    assert not [r for r in rows if r.event == "checkpoint"]  # step 4 was due to save: it did not
    assert trainer.state.global_step == 4  # seen one step late: one more update, then the stop
    assert rows[-1].status == "failed"


def test_only_a_single_cuda_process_defers(tmp_path):
    log = MetricLog(tmp_path / "metrics.jsonl")
    cb = MetricsCallback(log, "d", start_fields=start_fields(backend="t", job=_job(), precision="fp32",
                                                             tokens_per_step=64), seq_len=16)
    trainer = _trainer(tmp_path, cb)
    log.close()
    assert defer_logs(trainer) is None  # on the CPU the read costs no GPU time: the Trainer's own log
    assert not isinstance(trainer._maybe_log_save_evaluate, DeferredLog)

    def like(world_size, method=trainer._maybe_log_save_evaluate):
        args = SimpleNamespace(world_size=world_size, device=torch.device("cuda"))
        return SimpleNamespace(args=args, _maybe_log_save_evaluate=method)

    assert isinstance(defer_logs(like(1)), DeferredLog)
    assert defer_logs(like(2)) is None  # its loss is gathered across ranks at log time

    class Odd(type(trainer)):
        def _maybe_log_save_evaluate(self, logs, step):  # not the log step DeferredLog reads
            pass

    odd = Odd.__new__(Odd)  # a trainer of a class that overrides it: the guard looks at that class's
    odd.args = like(1).args
    notes = []
    assert defer_logs(odd, notes=notes) is None  # the Trainer's own log, and the start row says why
    assert "_maybe_log_save_evaluate takes no tr_loss, grad_norm, start_time, learning_rate" in notes[0]
