"""Reward functions: the built-ins, and every way loading a job's reward can go wrong, said before
training (method.rewards[i], the function, the problem)."""

from __future__ import annotations

import pytest

from tests.conftest import DATA, write_job
from trainhub.rewards import answer_format, exact_match
from trainhub.rewards.load import RewardError, load, probe

ROWS = [{"prompt": [{"role": "user", "content": "What is 2 plus 2?"}], "answer": "4"},
        {"prompt": [{"role": "user", "content": "What is 3 times 3?"}], "answer": "9"}]


def test_exact_match_and_format():
    completions = ["so <answer>4</answer>", [{"role": "assistant", "content": "<answer> 9.0 </answer>"}],
                   "<answer>5</answer>", "4", "<answer>4</answer> trailing"]
    answers = ["4", "9", "4", "4", "4"]
    assert exact_match([None] * 5, completions, answer=answers) == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert answer_format([None] * 5, completions) == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert answer_format([None], ["<answer></answer>"]) == [0.0]


def _file(tmp_path, body: str):
    path = tmp_path / "my_rewards.py"
    path.write_text(body)
    return path


def test_builtin_and_file_rewards_load(tmp_path):
    assert load("trainhub.rewards:exact_match") is exact_match
    path = _file(tmp_path, "def length(prompts, completions, **kw):\n    return [float(len(c)) for c in completions]\n")
    fn = load(f"{path}:length")
    probe(fn, "length", "r", ROWS)  # returns one float per completion: fine


@pytest.mark.parametrize(("body", "spec", "message"), [
    (None, "no_such_pkg.rewards:f", "module 'no_such_pkg.rewards' not found"),
    (None, "{tmp}/absent.py:f", "absent.py not found"),
    ("def other(prompts, completions, **kw):\n    return []\n", "{file}:score", "has no function 'score' (it has: other)"),
    ("score = 3\n", "{file}:score", "is a int, not a function"),
    ("def score(completions):\n    return []\n", "{file}:score", "wrong signature (completions)"),
    ("import nonexistent_dep\n", "{file}:score", "importing {file} failed: ModuleNotFoundError"),
])
def test_loading_errors(tmp_path, body, spec, message):
    path = _file(tmp_path, body) if body else tmp_path / "my_rewards.py"
    spec = spec.format(tmp=tmp_path, file=path)
    with pytest.raises(RewardError, match="^method.rewards\\[0\\]: .*" + _re(message.format(file=path))):
        load(spec, "method.rewards[0]")


def _re(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize(("returns", "message"), [
    ("'1.0'", "returned str '1.0'; it must return a list"),
    ("['high' for _ in completions]", "returned 'high' (str) for a completion; each reward must be a finite number"),
    ("[1.0]", "it must return a list with one number per completion (2 here)"),
    ("[float('nan') for _ in completions]", "returned nan (float)"),
    ("1 / 0", "raised ZeroDivisionError: division by zero"),
])
def test_probe_errors(tmp_path, returns, message):
    path = _file(tmp_path, f"def score(prompts, completions, **kw):\n    return {returns}\n")
    fn = load(f"{path}:score")
    with pytest.raises(RewardError, match=_re(message)):
        probe(fn, "score", "method.rewards[0]", ROWS)


def test_check_reports_a_bad_reward_before_anything_runs(tmp_path):
    """validate (the runner's check) names the reward; nothing is trained."""
    from tests.conftest import run_cli

    job = {"name": "bad-reward", "output_dir": str(tmp_path / "run"), "backend": "trl",
           "model": {"path": str(tmp_path)},
           "method": {"type": "grpo", "group_size": 2, "rewards": [{"function": "trainhub.rewards:no_such"}]},
           "data": {"train": str(DATA / "arithmetic.jsonl"), "format": "prompt", "overlong": "drop"},
           "train": {"micro_batch_size": 2, "max_steps": 2, "on_nonfinite": "stop"}}
    done = run_cli("validate", "--config", str(write_job(tmp_path / "job.yaml", job)))
    assert done.returncode == 1
    assert "method.rewards[0]: trainhub.rewards has no function 'no_such' (it has: answer_format, exact_match" \
        in done.stderr
