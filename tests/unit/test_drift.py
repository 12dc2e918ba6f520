"""metrics/drift.py: the loss-drift guard an fp8 run is held to against its bf16 twin (research/gpu_fp8.sh)."""

from __future__ import annotations

import math

import pytest

from trainhub.metrics import EvalRow, MetricLog, TrainRow, read_rows
from trainhub.metrics.drift import loss_drift, main


def rows(losses: dict[int, float], evals: dict[int, float] | None = None) -> list:
    out = [TrainRow(run_id="r", step=s, loss=v, lr=1e-3, grad_norm=1.0, tokens=s * 10, tokens_per_s=1.0, mfu=None,
                    mem_gb=None, epoch=0.0) for s, v in losses.items()]
    out += [EvalRow(run_id="r", step=s, eval_loss=v, perplexity=math.exp(v), eval_tokens=100)
            for s, v in (evals or {}).items()]
    return out


def test_windows_average_the_noise_and_give_the_relative_error():
    ref = {s: 4.0 - s / 100 + (0.2 if s % 2 else -0.2) for s in range(1, 41)}  # +-5% step noise, averaging to 0
    cand = {s: v * 1.01 for s, v in ref.items()}  # 1% above, everywhere
    drift = loss_drift(rows(ref, {40: 3.0}), rows(cand, {40: 3.03}), window=20)
    assert drift.steps == 40 and [step for step, _ in drift.rel] == [20, 40]
    assert drift.final_rel == pytest.approx(0.01) and drift.max_abs_rel == pytest.approx(0.01)
    assert drift.final_eval_rel == pytest.approx(0.01)
    noisy = {s: ref[s] * (1.05 if s % 2 else 0.95) for s in ref}  # 5% per step, both signs: ~0 per window
    assert abs(loss_drift(rows(ref), rows(noisy), window=20).final_rel) < 0.005


def test_only_common_finite_steps_count():
    ref = {s: 2.0 for s in range(1, 11)}
    cand = {**{s: 2.2 for s in range(1, 11)}, 3: float("nan"), 4: None, 11: 9.0}
    drift = loss_drift(rows(ref), rows(cand), window=4)
    assert drift.steps == 8 and drift.final_rel == pytest.approx(0.1) and drift.final_eval_rel is None
    with pytest.raises(ValueError, match="share 8 steps"):
        loss_drift(rows(ref), rows(cand), window=9)


def test_the_command_line_fails_over_tolerance(tmp_path, capsys):
    for name, scale in (("bf16", 1.0), ("fp8", 1.004)):
        (tmp_path / name).mkdir()
        log = MetricLog(tmp_path / name / "metrics.jsonl")
        for row in rows({s: 3.0 * scale for s in range(1, 21)}):
            log.write(row)
        log.close()
    assert len(read_rows(tmp_path / "fp8" / "metrics.jsonl")) == 20
    args = [str(tmp_path / "bf16"), str(tmp_path / "fp8"), "--window", "10"]
    assert main(args + ["--tolerance", "0.005"]) == 0
    assert main(args + ["--tolerance", "0.003"]) == 1
    assert "exceeds the tolerance 0.300%" in capsys.readouterr().out
