"""The native sampler (engine/rl/rollout.py) on tiny random models, fp32 on the CPU.

- greedy completions equal transformers' generate on the same weights, left-padded prompts of
  different lengths in one batch, for Llama (GQA, Llama 3 RoPE), Qwen2 (MQA, tied) and Qwen3 (q/k norm);
- each sampled token's log-probability equals a full forward's log_softmax(logits / T) at that token,
  and everything after a row's first EOS is masked out;
- LoRA (peft) samples through the adapters, and with them disabled gives the base model's tokens;
- top-k / top-p leave only the allowed tokens; a fixed generator reproduces a rollout;
- the decode step is one graph: torch.compile(fullgraph=True) traces it with no break and no
  recompilation over the steps (backend "eager": the trace is what is checked, not Inductor's code).
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from tests.unit.test_models import CONFIGS, hf_model, ours_like
from trainhub.engine.device import Precision
from trainhub.engine.models.own import add_lora
from trainhub.engine.rl.rollout import Sampler, SamplingSpec, filter_logits, left_pad
from trainhub.job import LoraAdapter

transformers = pytest.importorskip("transformers")
FP32 = Precision("fp32", None, False)
CPU = torch.device("cpu")
PROMPTS = [[5, 9, 3, 17, 2], [8, 1], [4, 4, 12, 30, 7, 6, 11, 2, 9]]


def sampler(model, eos: int, prompt_tokens: int = 0, **spec) -> Sampler:
    return Sampler(model, SamplingSpec(**{"max_new_tokens": 12, **spec}), eos_ids=[eos], pad_id=0, device=CPU,
                   precision=FP32, prompt_tokens=prompt_tokens)


def full_logprobs(model, out, temperature: float) -> torch.Tensor:
    """log_softmax(logits / T) at each completion token, from one forward over prompt + completion."""
    ids = torch.cat([out.prompt_ids, out.completion_ids], 1)
    mask = torch.cat([out.prompt_mask, torch.ones_like(out.completion_ids)], 1).bool()
    positions = (mask.long().cumsum(-1) - 1).clamp(min=0)
    n = ids.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    attn = (causal[None] & mask[:, None, :]) | torch.eye(n, dtype=torch.bool)[None]
    hidden = model(ids, position_ids=positions, attention_mask=attn[:, None])
    p = out.prompt_ids.shape[1]
    logits = hidden[:, p - 1:-1] @ model.head_weight.T
    logp = (logits / temperature).log_softmax(-1).gather(-1, out.completion_ids[..., None]).squeeze(-1)
    return logp * out.completion_mask


@pytest.mark.parametrize("name", ["llama-gqa-llama3", "qwen2-mqa-tied", "qwen3-headdim"])
def test_greedy_equals_transformers_generate(name):
    hf = hf_model(name)
    ours = ours_like(hf)
    eos = hf.config.vocab_size - 1  # a token the random model rarely picks: rows run to max_new_tokens
    out = sampler(ours, eos, greedy=True).sample(PROMPTS)
    ids, mask = left_pad(PROMPTS, 0)
    ref = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=12, do_sample=False, eos_token_id=eos,
                      pad_token_id=0)[:, ids.shape[1]:]
    assert torch.equal(out.completion_ids, ref)
    assert out.completion_ids.unique().numel() > 3  # not a degenerate repeat of one token


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_equal_a_full_forward(temperature):
    hf = hf_model("llama-gqa-llama3")
    ours = ours_like(hf)
    free = sampler(ours, 96, temperature=temperature).sample(PROMPTS * 2, generator=torch.Generator().manual_seed(0))
    eos = int(free.completion_ids[1, 4])  # a token some row samples mid-way: with it as EOS, that row stops there
    out = sampler(ours, eos, temperature=temperature).sample(PROMPTS * 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.logprobs, full_logprobs(ours, out, temperature), atol=1e-5, rtol=0)
    # stop on EOS: the mask covers tokens up to and including the first EOS, pads after it
    for row, m in zip(out.completion_ids, out.completion_mask, strict=True):
        hits = (row == eos).nonzero()
        n = int(m.sum())
        if len(hits):
            assert n == int(hits[0]) + 1 and (row[n:] == 0).all()
        else:
            assert n == row.numel()
    assert out.truncated.tolist() == [not (r == eos).any().item() for r in out.completion_ids]
    assert int(out.completion_mask[1].sum()) <= 5 and not out.truncated[1]
    again = sampler(ours, eos, temperature=temperature).sample(PROMPTS * 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.completion_ids, out.completion_ids)


def test_lora_samples_through_the_adapters():
    hf = hf_model("qwen3-headdim")
    base_tokens = sampler(ours_like(hf), 88, greedy=True).sample(PROMPTS).completion_ids
    model = add_lora(ours_like(hf), LoraAdapter(type="lora", rank=4, alpha=8, targets="all-linear"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3, generator=torch.Generator().manual_seed(len(name)))
    tuned = sampler(model, 88, greedy=True).sample(PROMPTS)
    assert not torch.equal(tuned.completion_ids, base_tokens)
    with model.disable_adapter():
        assert torch.equal(sampler(model, 88, greedy=True).sample(PROMPTS).completion_ids, base_tokens)
    out = sampler(model, 88, temperature=1.0).sample(PROMPTS, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out.logprobs, full_logprobs(model.get_base_model(), out, 1.0), atol=1e-5, rtol=0)


def test_top_k_and_top_p_filter():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 3.0]])
    assert torch.isfinite(filter_logits(logits, 2, 1.0)).tolist() == [[True, False, False, False, True]]
    probs = logits.softmax(-1)[0]  # sorted: 0.64 (4), 0.24 (0), 0.09 (1), ...
    assert probs[4] < 0.7 < probs[4] + probs[0]
    assert torch.isfinite(filter_logits(logits, 0, 0.7)).tolist() == [[True, False, False, False, True]]
    assert torch.isfinite(filter_logits(logits, 0, 0.5)).tolist() == [[False, False, False, False, True]]
    hf = hf_model("qwen2-mqa-tied")
    out = sampler(ours_like(hf), 100, top_k=1).sample(PROMPTS, generator=torch.Generator().manual_seed(2))
    greedy = sampler(ours_like(hf), 100, greedy=True).sample(PROMPTS)
    assert torch.equal(out.completion_ids, greedy.completion_ids)  # top-1 sampling is greedy


def test_decode_step_is_one_graph_without_recompiles():
    from dataclasses import replace

    import torch._dynamo as dynamo

    from trainhub.engine.kernels import EAGER, use_kernels

    hf = hf_model("llama-gqa-llama3")
    ours = ours_like(hf)
    s = sampler(ours, 3, prompt_tokens=32, top_p=0.9, top_k=20)  # one cache of 32 + 12 slots for both rollouts
    dynamo.reset()
    counts = CompileCounter()
    s._decode = torch.compile(s._decode_step, backend=counts, fullgraph=True, dynamic=False)
    use_kernels(ours, replace(EAGER, name="update"))  # what the update runs: the sampler swaps it out each rollout
    out = s.sample(PROMPTS, generator=torch.Generator().manual_seed(0))
    eager = sampler(ours, 3, top_p=0.9, top_k=20).sample(PROMPTS, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.completion_ids, eager.completion_ids)
    shorter = [p[:3] for p in PROMPTS[:2]] + [list(range(1, 25))]  # prompts 16 -> 32 wide: same cache and trace
    again = s.sample(shorter, generator=torch.Generator().manual_seed(5))
    eager = sampler(ours, 3, top_p=0.9, top_k=20).sample(shorter, generator=torch.Generator().manual_seed(5))
    assert torch.equal(again.completion_ids, eager.completion_ids)
    assert counts.frame_count == 1  # 22 decode steps over two rollouts, one trace
    dynamo.reset()


def test_the_sampler_runs_the_reference_ops_and_gives_the_models_back():
    """The update may route the model through fused kernels (backend.kernels); sampling runs the reference ops
    (rollout.py "Ops") and leaves each module's own ops as they were, also when a rollout raises."""
    from dataclasses import replace

    from trainhub.engine.kernels import EAGER, use_kernels

    def refuse(*_):
        raise AssertionError("the sampler ran the update's ops")

    ours = ours_like(hf_model("llama-gqa-llama3"))
    update_ops = replace(EAGER, name="update", rms_norm=refuse, rope=refuse, swiglu=refuse)
    use_kernels(ours, update_ops)
    out = sampler(ours, 3).sample(PROMPTS, generator=torch.Generator().manual_seed(0))
    use_kernels(ours, EAGER)
    again = sampler(ours, 3).sample(PROMPTS, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.completion_ids, again.completion_ids)
    use_kernels(ours, update_ops)
    with pytest.raises(IndexError):  # a token id past the vocabulary: the embedding raises mid-rollout
        sampler(ours, 3).sample([[10**6]], generator=torch.Generator().manual_seed(0))
    assert {m.ops.name for m in ours.modules() if hasattr(m, "ops")} == {"update"}


def test_the_transformers_path_is_refused():
    hf = hf_model("llama-tied-bias")
    with pytest.raises(ValueError, match="own decoder"):
        sampler(hf, 1)


assert set(CONFIGS) >= {"llama-gqa-llama3", "qwen2-mqa-tied", "qwen3-headdim"}
