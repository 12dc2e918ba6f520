"""The native sampler and GRPO loop on a CUDA GPU: the compiled (CUDA-graphed) decode step gives the eager
step's tokens, greedy output equals transformers' generate, and `train --backend native` runs GRPO in bf16
with backend.compile. Skipped without CUDA."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import rows, run_cli, write_job
from tests.integration.test_native_grpo import _tiny
from tests.unit.test_models import hf_model, ours_like
from trainhub.engine.device import Precision
from trainhub.engine.rl.rollout import Sampler, SamplingSpec, left_pad

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
CUDA = torch.device("cuda")
PROMPTS = [[5, 9, 3, 17, 2], [8, 1], [4, 4, 12, 30, 7, 6, 11, 2, 9]] * 4


def sampler(model, compiled: bool, precision=Precision("fp32", None, False), **spec) -> Sampler:
    return Sampler(model, SamplingSpec(**{"max_new_tokens": 40, **spec}), eos_ids=[96], pad_id=0, device=CUDA,
                   precision=precision, compiled=compiled)


def test_greedy_equals_generate_on_cuda():
    hf = hf_model("llama-gqa-llama3")
    ours = ours_like(hf).to(CUDA)
    hf = hf.to(CUDA)
    ids, mask = left_pad(PROMPTS, 0)
    ref = hf.generate(input_ids=ids.to(CUDA), attention_mask=mask.to(CUDA), max_new_tokens=40, do_sample=False,
                      eos_token_id=96, pad_token_id=0)[:, ids.shape[1]:]
    for compiled in (False, True):
        out = sampler(ours, compiled, greedy=True).sample(PROMPTS)
        assert torch.equal(out.completion_ids[:, :ref.shape[1]], ref), f"compiled={compiled}"


def test_compiled_sampling_equals_eager():
    ours = ours_like(hf_model("qwen3-headdim")).to(CUDA)
    runs = {}
    for compiled in (False, True):
        s = sampler(ours, compiled, top_p=0.95)
        s.sample(PROMPTS, torch.Generator(CUDA).manual_seed(0))  # compile / capture
        runs[compiled] = s.sample(PROMPTS, torch.Generator(CUDA).manual_seed(1))
    assert torch.equal(runs[True].completion_ids, runs[False].completion_ids)
    torch.testing.assert_close(runs[True].logprobs, runs[False].logprobs, atol=1e-4, rtol=0)


@pytest.mark.parametrize("compile_", [False, True])
def test_grpo_on_gpu_bf16(tmp_path, compile_):
    job = _tiny(tmp_path, "gpu-grpo", {"algorithm": "dapo", "kl_beta": 0.05, "mask_truncated": False},
                precision="auto", max_steps=3)
    job["backend"] = {"type": "native", "compile": compile_}
    done = run_cli("train", "--config", str(write_job(tmp_path / "job.yaml", job)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert rows(tmp_path / "gpu-grpo", "start")[0]["precision"] == "bf16 autocast"
    train = rows(tmp_path / "gpu-grpo", "train")
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all(r["method"]["rollout_tokens_per_s"] > 0 and r["grad_norm"] > 0 for r in train)


def test_packed_update_equals_padded_in_bf16():
    """The update's packed layout (flash varlen) gives the padded layout's log-probabilities on the scored
    tokens, within bf16 noise, and is the one the loop picks on CUDA in bf16."""
    from trainhub.engine.models.attention import varlen_runs
    from trainhub.engine.rl.train import completion_logprobs, update_batch

    if not varlen_runs(CUDA, torch.bfloat16):
        pytest.skip("no varlen attention kernel in this torch")
    ours = ours_like(hf_model("llama-gqa-llama3")).to(CUDA)
    bf16 = Precision("bf16 autocast", torch.bfloat16, False)
    out = sampler(ours, False, bf16).sample(PROMPTS, torch.Generator(CUDA).manual_seed(2))
    got = {}
    for packed in (False, True):
        batch = update_batch(out, slice(0, len(PROMPTS)), packed)
        assert ("cu_seq_lens_q" in batch.inputs) == packed
        got[packed] = completion_logprobs(ours, batch, 1.0, bf16, CUDA) * out.completion_mask
    torch.testing.assert_close(got[True], got[False], atol=3e-2, rtol=0)
