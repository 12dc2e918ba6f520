"""method.reward_workers (rewards/pool.py): a reward call cut into slices scored in worker processes gives the
same values in the same order as the call in-process; the slices really run in other processes; a worker's
error and a wrong count reach the caller."""

from __future__ import annotations

import os

import pytest

from trainhub.rewards.pool import RewardPool

REWARD = '''
import os

def length(prompts, completions, **kwargs):
    return [len(c[0]["content"]) + 0.5 * len(kwargs["answer"][i] or "") for i, c in enumerate(completions)]

def pid(prompts, completions, **kwargs):
    return [os.getpid()] * len(completions)

def short(prompts, completions, **kwargs):
    return [1.0]

def boom(prompts, completions, **kwargs):
    raise RuntimeError("checker crashed")
'''


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    path = tmp_path_factory.mktemp("rewards") / "rw.py"
    path.write_text(REWARD)
    specs = [f"{path}:{name}" for name in ("length", "pid", "short", "boom")]
    pool = RewardPool(specs, workers=3)
    yield pool
    pool.close()


def _call(n: int) -> dict:
    return {"prompts": [[{"role": "user", "content": f"q{i}"}] for i in range(n)],
            "completions": [[{"role": "assistant", "content": "x" * i}] for i in range(n)],
            "completion_ids": [[1] * i for i in range(n)], "trainer_state": None,
            "answer": [str(i) * (i % 3) for i in range(n)]}


@pytest.mark.parametrize("n", [1, 2, 7, 30])  # fewer completions than workers, uneven slices
def test_values_in_order_equal_the_in_process_call(pool, n):
    kwargs = _call(n)
    want = [len(c[0]["content"]) + 0.5 * len(a) for c, a in zip(kwargs["completions"], kwargs["answer"], strict=True)]
    assert pool(0, **kwargs) == want
    assert pool.wrap(0, "length")(**kwargs) == want


def test_slices_run_in_worker_processes(pool):
    pids = pool(1, **_call(30))
    assert os.getpid() not in pids and len(set(pids)) >= 1 and len(pids) == 30


def test_wrong_count_and_errors_reach_the_caller(pool):
    with pytest.raises(ValueError, match="returned 1 values for 10 completions"):
        pool(2, **_call(30))
    with pytest.raises(RuntimeError, match="checker crashed"):
        pool(3, **_call(4))


def test_wrapped_reward_keeps_the_function_name(pool):
    assert pool.wrap(0, "length").__name__ == "length"
