"""nanoGPT's stdout -> metric rows: the exact lines its train.py prints, warm-up and eval lines included."""

from __future__ import annotations

import math

import pytest

from trainhub.metrics.flops import flops_per_token, peak_flops
from trainhub.runners.nanogpt.logparse import Eval, Iter, RowMaker, Save, parse


def test_train_line_during_warm_up_has_no_mfu():
    assert parse("iter 0: loss 10.9863, time 36021.42ms, mfu -100.00%\n") == Iter(0, 10.9863, 36021.42, None)
    assert parse("iter 4: loss 9.1234, time 123.45ms, mfu -100.00%") == Iter(4, 9.1234, 123.45, None)


def test_train_line_after_warm_up():
    assert parse("iter 250: loss 3.3012, time 1023.00ms, mfu 38.51%") == Iter(250, 3.3012, 1023.0, 38.51)


def test_non_finite_loss_parses_as_nan():
    event = parse("iter 12: loss nan, time 10.00ms, mfu 1.00%")
    assert isinstance(event, Iter) and math.isnan(event.loss)


def test_eval_and_save_lines():
    assert parse("step 2000: train loss 3.0612, val loss 3.0731") == Eval(2000, 3.0612, 3.0731)
    assert parse("step 0: train loss 10.9889, val loss 10.9912") == Eval(0, 10.9889, 10.9912)
    assert parse("saving checkpoint to /runs/x") == Save("/runs/x")


@pytest.mark.parametrize("line", [
    "tokens per iteration will be: 491,520",
    "found vocab_size = 2048 (inside /runs/x/data/meta.pkl)",
    "number of parameters: 123.59M",
    "iter 3: loss 1.0, time 5ms",                       # truncated
    "step 5: train loss 1.0",                           # truncated
    "Overriding: batch_size = 12",
    "",
])
def test_other_lines_are_not_metrics(line):
    assert parse(line) is None


def maker(**kw) -> RowMaker:
    args = dict(run_id="r", max_steps=10, tokens_per_step=4 * 8 * 1024, peak=peak_flops("NVIDIA H100 80GB HBM3"),
                flops_per_token=flops_per_token(n_frozen=0, n_trainable=85_000_000, layers=12, heads=12, head_dim=64,
                                                seq_len=1024),
                devices=1, lr_at=lambda it: 1e-3 * (it + 1), train_tokens=1_000_000, eval_tokens=2 * 8 * 1024)
    return RowMaker(**{**args, **kw})


def test_train_row_recomputes_throughput_and_mfu():
    m = maker()
    row = m.train(Iter(4, 2.5, 250.0, None))
    assert row.step == 5 and row.loss == 2.5 and row.lr == pytest.approx(5e-3)
    assert row.tokens == 5 * 32768 and row.tokens_per_s == pytest.approx(32768 / 0.25)
    expected = m.flops_per_token * 32768 / 0.25 / 989e12  # H100 SXM, not nanoGPT's A100 312e12
    assert row.mfu == pytest.approx(expected) and 0 < row.mfu < 1
    assert row.epoch == pytest.approx(5 * 32768 / 1_000_000) and row.grad_norm is None and row.mem_gb is None


def test_mfu_over_several_gpus_is_per_gpu():
    one, two = maker().train(Iter(0, 1.0, 100.0, None)), maker(devices=2).train(Iter(0, 1.0, 100.0, None))
    assert two.mfu == pytest.approx(one.mfu / 2)


def test_no_mfu_without_a_known_peak():
    assert maker(peak=None).train(Iter(0, 1.0, 100.0, None)).mfu is None


def test_the_unsaved_extra_iteration_gives_no_row():
    m = maker(max_steps=10)
    assert m.train(Iter(9, 1.0, 10.0, 5.0)).step == 10
    assert m.train(Iter(10, 1.0, 10.0, 5.0)) is None


def test_non_finite_loss_is_null_in_the_row():
    assert maker().train(Iter(1, float("nan"), 10.0, None)).loss is None


def test_eval_row():
    row = maker().eval(Eval(6, 2.9, 3.1))
    assert (row.step, row.eval_loss, row.eval_tokens) == (6, 3.1, 16384)
    assert row.perplexity == pytest.approx(math.exp(3.1))
