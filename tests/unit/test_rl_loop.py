"""The native GRPO loop's pieces (engine/rl/train.py, prompts.py) and the runner's view of GRPO jobs.

- one job file validates on both backends (native and trl) with no problem; native refuses, naming the
  key, what it cannot do yet (a truncated prompt, an eval set, fp16, a transformers model) and train.loss;
- dynamic sampling (DAPO) keeps only groups with a reward spread, sampling more prompts to fill the step;
- the update's forward over prompt + completion gives the sampler's log-probabilities (fp32), padded or
  packed (varlen): the importance ratio of a fresh rollout is 1, so old-policy ratios compare like with like;
  both layouts give the same gradients;
- rewards: weighted sum, None counts as nothing and stays out of its function's mean; prompts are
  rendered with the chat template and drawn in a seeded order that a resume reproduces.
"""

from __future__ import annotations

import pytest
import torch

from tests.conftest import ROOT
from tests.unit.test_models import hf_model, ours_like
from trainhub.compose import compose
from trainhub.engine.device import Precision
from trainhub.engine.rl.prompts import Prompt, Rewards, draw
from trainhub.engine.rl.rollout import Rollout, Sampler, SamplingSpec
from trainhub.engine.rl.train import completion_logprobs, update_batch
from trainhub.host import Host
from trainhub.job import Job
from trainhub.jobfile import resolve, validate
from trainhub.runners.native.runner import NativeRunner
from trainhub.runners.trl.runner import TrlRunner

DEMO = ROOT / "config" / "grpo_native.yaml"


def demo_job(**changes) -> Job:
    raw, origins = compose(DEMO)
    job = resolve(validate(raw, str(DEMO), origins), cwd=ROOT, origins=origins)
    return job.model_copy(update=changes) if changes else job


def test_the_demo_job_validates_on_native_and_trl():
    job = demo_job()
    assert NativeRunner().check(job, Host()) == []
    if TrlRunner().missing():
        pytest.skip("trl is not installed")
    assert TrlRunner().check(job, Host()) == []


@pytest.mark.parametrize("change, where, says", [
    ({"data": {"overlong": "truncate"}}, "data.overlong", "cannot be cut"),
    ({"data": {"eval_fraction": 0.1}}, "data.eval", "not wired"),
    ({"train": {"precision": {"type": "fp16"}}}, "train.precision", "fp16"),
    ({"train": {"loss": "chunked"}}, "train.loss", "method.algorithm"),
    ({"model": {"impl": "hf"}}, "model", "own decoder"),
])
def test_native_refuses_what_it_cannot_do_yet(change, where, says):
    job = demo_job()
    data = job.model_dump()
    for section, values in change.items():
        data[section].update(values)
    problems = [p for p in NativeRunner().check(Job.model_validate(data), Host()) if p.where == where]
    assert len(problems) == 1 and says in problems[0].message


def test_a_missing_reward_file_is_named():
    data = demo_job().model_dump()
    data["method"]["rewards"] = [{"function": "nowhere/reward.py:score", "weight": 1.0}]
    [problem] = NativeRunner().check(Job.model_validate(data), Host())
    assert "method.rewards[0]" in problem.message and "nowhere/reward.py" in problem.message


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_the_update_forward_gives_the_rollouts_logprobs(packed):
    model = ours_like(hf_model("qwen3-headdim"))
    fp32, cpu = Precision("fp32", None, False), torch.device("cpu")
    sampler = Sampler(model, SamplingSpec(max_new_tokens=10, temperature=0.8), eos_ids=[5], pad_id=0, device=cpu,
                      precision=fp32)
    prompts = [[3, 9, 12], [7, 7, 1, 2, 30, 4, 8], [11]] * 2
    out = sampler.sample(prompts, torch.Generator().manual_seed(3))
    assert (out.lengths < 10).any() and (out.lengths == 10).any()  # early EOS and truncation both present
    batch = update_batch(out, slice(0, 6), packed)
    assert ("cu_seq_lens_q" in batch.inputs) == packed
    assert batch.tokens == int(out.prompt_mask.sum() + out.completion_mask.sum())
    logp = completion_logprobs(model, batch, 0.8, fp32, cpu)
    torch.testing.assert_close(logp * out.completion_mask, out.logprobs, atol=1e-5, rtol=0)


def test_packed_and_padded_updates_give_the_same_gradients():
    """The packed layout (varlen on CUDA; a block-diagonal mask here) scores the same tokens with the same
    log-probabilities as the padded one, so the loss and every gradient agree."""
    model = ours_like(hf_model("qwen3-headdim"))
    fp32, cpu = Precision("fp32", None, False), torch.device("cpu")
    sampler = Sampler(model, SamplingSpec(max_new_tokens=8, temperature=1.0), eos_ids=[5], pad_id=0, device=cpu,
                      precision=fp32)
    out = sampler.sample([[3, 9, 12], [7, 7, 1, 2, 30, 4, 8], [11], [4, 4]], torch.Generator().manual_seed(1))
    weights = torch.randn(out.completion_ids.shape, generator=torch.Generator().manual_seed(0))
    grads = []
    for packed in (False, True):
        model.zero_grad(set_to_none=True)
        batch = update_batch(out, slice(0, 4), packed)
        logp = completion_logprobs(model, batch, 1.0, fp32, cpu)
        (logp * out.completion_mask * weights).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_an_empty_prompt_keeps_the_padded_layout():
    out_rows = Rollout(prompt_ids=torch.tensor([[0, 0], [0, 4]]), prompt_mask=torch.tensor([[0, 0], [0, 1]]),
                       completion_ids=torch.tensor([[6, 5], [7, 8]]), completion_mask=torch.ones(2, 2, dtype=torch.long),
                       logprobs=torch.zeros(2, 2), truncated=torch.tensor([False, True]))
    assert "attention_mask" in update_batch(out_rows, slice(0, 2), packed=True).inputs


def test_rewards_weight_and_skip_none(tmp_path):
    file = tmp_path / "r.py"
    file.write_text("def length(prompts, completions, **_):\n"
                    "    return [float(len(c[-1]['content'])) for c in completions]\n"
                    "def picky(prompts, completions, answer=None, **_):\n"
                    "    return [None if a is None else 1.0 for a in answer]\n")
    data = demo_job().model_dump()
    data["method"]["rewards"] = [{"function": f"{file}:length", "weight": 0.5},
                                 {"function": f"{file}:picky", "weight": 2.0}]
    rewards = Rewards(Job.model_validate(data))
    prompts = [Prompt([1], [{"role": "user", "content": "q"}], {"answer": a}) for a in ("1", None)]
    total, means = rewards(prompts, ["abcd", "ab"], [[1], [2]])
    assert total.tolist() == [0.5 * 4 + 2.0, 0.5 * 2]
    assert means == {"length": 3.0, "picky": 1.0}


def test_prompts_are_drawn_in_a_resumable_seeded_order():
    items = [Prompt([i], []) for i in range(5)]
    first, epoch, index = draw(items, 3, 0, 0, seed=1, shuffle=True)
    second, epoch, index = draw(items, 3, epoch, index, seed=1, shuffle=True)  # crosses into epoch 1
    assert (epoch, index) == (1, 1)
    assert sorted(p.ids[0] for p in first + second[:2]) == [0, 1, 2, 3, 4]  # epoch 0 is a permutation
    again, _, _ = draw(items, 3, 0, 3, seed=1, shuffle=True)  # resumed at (0, 3)
    assert [p.ids for p in again] == [p.ids for p in second]
    plain, _, _ = draw(items, 5, 0, 0, seed=1, shuffle=False)
    assert [p.ids[0] for p in plain] == [0, 1, 2, 3, 4]


def test_the_demo_prompts_render_with_the_chat_template(tmp_path):
    from trainhub.engine.model import build_tokenizer
    from trainhub.engine.rl.prompts import load_prompts

    job = demo_job()
    tok = build_tokenizer(job, tmp_path)
    prompts = load_prompts(job, tok)
    assert len(prompts.items) == 400 and prompts.stats["dropped_overlong"] == 0
    text = tok.decode(prompts.items[0].ids)
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")
    assert prompts.items[0].fields["answer"] == "35"


def test_dynamic_sampling_keeps_groups_with_a_reward_spread(tmp_path):
    from trainhub.engine.model import build_tokenizer
    from trainhub.engine.models import build_model
    from trainhub.engine.rl.prompts import load_prompts
    from trainhub.engine.rl.train import collect
    from trainhub.engine.state import TrainState

    file = tmp_path / "r.py"  # prompts with an even answer: reward by completion length parity; odd: always 0
    file.write_text("def parity(prompts, completions, answer=None, **_):\n"
                    "    return [float(len(c[-1]['content']) % 2) if int(a) % 2 == 0 else 0.0\n"
                    "            for c, a in zip(completions, answer)]\n")
    data = demo_job().model_dump()
    data["method"].update(dynamic_sampling=True, group_size=4, max_new_tokens=6,
                          rewards=[{"function": f"{file}:parity", "weight": 1.0}])
    data["train"].update(micro_batch_size=8, grad_accum=2)
    job = Job.model_validate(data)
    tok = build_tokenizer(job, tmp_path)
    items = load_prompts(job, tok).items
    sampler = Sampler(build_model(job, tok), SamplingSpec(max_new_tokens=6), eos_ids=[tok.eos_token_id],
                      pad_id=tok.pad_token_id, device=torch.device("cpu"), precision=Precision("fp32", None, False))
    state = TrainState()
    got = collect(sampler, tok, Rewards(job), items, job, state, torch.Generator().manual_seed(0))
    assert got.out.completion_ids.shape[0] == 16 == got.reward.numel()
    groups = got.reward.view(-1, 4)
    assert (groups.amax(-1) > groups.amin(-1)).all()  # every kept group has a spread
    drawn = state.index + state.epoch * len(items)
    assert drawn > 4 and got.sampled_reward.numel() == 4 * drawn  # groups were dropped and more prompts drawn
    assert len(got.lengths) == got.sampled_reward.numel()


def test_plan_names_the_grpo_loss_and_the_sampler():
    lines = NativeRunner().plan_lines(demo_job())
    assert any("loss: grpo:" in line and "clip_high 0.2" in line and "engine/rl/loss.py" in line for line in lines)
    assert any("rollout:" in line and "eager" in line for line in lines)
