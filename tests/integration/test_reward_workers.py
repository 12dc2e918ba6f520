"""method.reward_workers through the real CLI: the shipped GRPO demonstration scored in 2 worker processes
trains exactly as scored in-process (same rewards and losses, step by step; CPU fp32, same seed), and the trl
backend hands TRL pooled rewards under the functions' names."""

from __future__ import annotations

from tests.conftest import ROOT, rows, run_cli

DEMO = ROOT / "config" / "grpo_native.yaml"


def _run(tmp_path, name: str, *sets: str) -> list[dict]:
    run = tmp_path / name
    done = run_cli("train", "--config", str(DEMO), "--set", f"output_dir={run}", "--set", "train.max_steps=3",
                   "--set", "train.save_every=null", "--set", "log.console=plain", *sets)
    assert done.returncode == 0, done.stdout + done.stderr
    return rows(run, "train")


def test_native_scores_in_workers_as_in_process(tmp_path):
    alone, pooled = _run(tmp_path, "alone"), _run(tmp_path, "pooled", "--set", "method.reward_workers=2")
    assert [r["method"]["rewards"] for r in pooled] == [r["method"]["rewards"] for r in alone]
    assert [r["loss"] for r in pooled] == [r["loss"] for r in alone]


def test_trl_gets_pooled_rewards_under_their_names():
    """What the trl (and unsloth) child hands GRPOTrainer: pooled rewards, named as the functions, returning
    what the functions return in-process."""
    from types import SimpleNamespace

    import datasets

    from trainhub.jobfile import load
    from trainhub.rewards.load import load as load_fn
    from trainhub.runners.trl.trainer import load_rewards

    job = load(DEMO, sets=["method.reward_workers=2"])
    data = SimpleNamespace(train=datasets.Dataset.from_list(
        [{"prompt": [{"role": "user", "content": "2+2="}], "answer": "4"}]))
    funcs = load_rewards(job, data)
    try:
        assert [f.__name__ for f in funcs] == ["digits", "exact_match"]
        call = {"prompts": [[{"role": "user", "content": "q"}]] * 3, "completion_ids": [[]] * 3,
                "completions": [[{"role": "assistant", "content": c}] for c in ("4", "four", "12 apples")],
                "trainer_state": None, "answer": ["4", "4", "12"]}
        for f, r in zip(funcs, job.method.rewards, strict=True):
            assert f(**call) == load_fn(r.function)(**call)
    finally:
        funcs[0].pool.close()


def test_plan_says_where_rewards_are_scored():
    for backend in ("native", "trl"):
        done = run_cli("plan", "-c", str(DEMO), "--backend", backend, "--set", "method.reward_workers=2")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "scored in 2 worker processes" in done.stdout, done.stdout
