"""research/bench_optim_quality.py's reading of the curves (issue 24 b), checked against values worked by hand."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "research"))

from bench_optim_quality import steps_to_reach  # noqa: E402


def test_steps_to_reach_interpolates_between_evaluations():
    evals = [(10, 5.0), (20, 4.0), (30, 3.0)]
    assert steps_to_reach(evals, 3.5) == 25.0  # halfway from 4.0 at step 20 to 3.0 at step 30
    assert steps_to_reach(evals, 4.0) == 20.0  # reached exactly at an evaluation
    assert steps_to_reach(evals, 6.0) == 10.0  # already below at the first evaluation
    assert steps_to_reach(evals, 2.9) is None  # never reached


def test_a_rise_after_reaching_does_not_count_twice():
    assert steps_to_reach([(10, 4.0), (20, 3.0), (30, 3.6)], 3.5) == 15.0
