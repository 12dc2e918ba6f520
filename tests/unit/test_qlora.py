"""Native QLoRA (engine/models/quant.py): NF4 base weights under peft's LoRA, on CPU.

- every linear but the head becomes a frozen NF4 weight; the model's logits move by the quantization error
  only (a relative error of a few percent, not zero: the weights really are 4-bit);
- LoRA over it trains (loss falls) and only the adapters get gradients;
- the adapter file loads with peft on the *unquantized* base (transformers' model) with the same values, and
  merge_onto_base merges it into the original weights (not the dequantized ones);
- backend native accepts qlora on a pretrained model and refuses it on model.init.
"""

from __future__ import annotations

import pytest
import torch

from tests.unit.test_models import ours_like
from trainhub.engine.loss import cross_entropy
from trainhub.engine.models import head_weight, hidden_states, load_base_with_adapter
from trainhub.engine.models.own import add_lora
from trainhub.engine.models.quant import is_nf4, quantize_nf4
from trainhub.host import Host
from trainhub.job import Job, LoraAdapter
from trainhub.runners import RUNNERS

pytest.importorskip("torchao")

# hidden 64 and intermediate 128 (multiples of the 64-value NF4 block)
SHAPE = dict(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2)


def _hf():
    import transformers

    config = transformers.LlamaConfig(**SHAPE, pad_token_id=0)
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config).eval()


def _loss(model, ids):
    return cross_entropy(hidden_states(model, {"input_ids": ids}), head_weight(model), ids, ids.numel())


def _ids(seed=1):
    return torch.randint(0, SHAPE["vocab_size"], (4, 16), generator=torch.Generator().manual_seed(seed))


def test_linears_but_the_head_become_frozen_nf4_and_the_forward_uses_them():
    ours, plain = ours_like(_hf()), ours_like(_hf())
    assert quantize_nf4(ours) == 2 * 7
    nf4 = {n: p for n, p in ours.named_parameters() if is_nf4(p)}
    assert len(nf4) == 14 and all("layers" in n and not p.requires_grad for n, p in nf4.items())
    assert not is_nf4(ours.lm_head.weight) and not is_nf4(ours.model.embed_tokens.weight)
    with torch.no_grad():
        for n, p in plain.named_parameters():
            if n in nf4:
                dequantized = nf4[n].get_original_weight()
                error = ((dequantized - p).norm() / p.norm()).item()
                assert 0.01 < error < 0.15, (n, error)  # 4 bits: ~10% of a normal weight's norm
                p.copy_(dequantized)
    ids = _ids()
    torch.testing.assert_close(hidden_states(ours, {"input_ids": ids}), hidden_states(plain, {"input_ids": ids}),
                               atol=1e-5, rtol=0)


def test_lora_over_nf4_trains_the_adapters_only():
    model = add_lora(_quantized(), LoraAdapter(rank=4, alpha=8))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = _ids()
    losses = []
    for _ in range(8):
        loss = _loss(model, ids)
        loss.backward()
        assert all(p.grad is None for n, p in model.named_parameters() if n not in trainable)
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses


def _quantized():
    ours = ours_like(_hf())
    quantize_nf4(ours)
    return ours


def test_adapter_loads_on_the_unquantized_base_and_merges_into_it(tmp_path):
    import transformers
    from peft import PeftModel

    hf = _hf()
    hf.save_pretrained(tmp_path / "base")
    model = add_lora(_quantized(), LoraAdapter(rank=4, alpha=8))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.1)
    model.save_pretrained(tmp_path / "adapter", safe_serialization=True, save_embedding_layers=False)
    saved = {n.replace(".default", ""): p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}

    on_hf = PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "base"),
                                      str(tmp_path / "adapter"))
    loaded = {n.replace(".default", ""): p for n, p in on_hf.named_parameters() if "lora_" in n}
    assert loaded.keys() == saved.keys()
    for n in saved:
        torch.testing.assert_close(loaded[n], saved[n], atol=0, rtol=0)

    job = Job.model_validate({"name": "t", "model": {"path": str(tmp_path / "base")}, "method": "sft",
                              "adapter": "qlora", "data": {"train": "x.jsonl", "format": "messages"},
                              "train": {"max_steps": 1}})
    merged = load_base_with_adapter(job, tmp_path / "adapter").merge_and_unload()
    ids = _ids()
    expected = on_hf.merge_and_unload()(ids).logits  # merged into the original fp32 weights
    got = hidden_states(merged, {"input_ids": ids}) @ head_weight(merged).T
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def _job(**model):
    return Job.model_validate({"name": "t", "backend": "native", "model": model, "method": "sft",
                               "adapter": "qlora", "data": {"train": "x.jsonl", "format": "messages"},
                               "train": {"max_steps": 1}})


def test_native_accepts_qlora_on_a_pretrained_model_and_refuses_it_on_init():
    native = RUNNERS["native"]
    assert [p for p in native.check(_job(path="some/model"), Host()) if p.where == "adapter.type"] == []
    init = _job(init={"family": "llama", "hidden_size": 64, "intermediate_size": 128, "num_layers": 1,
                      "num_heads": 4, "tokenizer": {"type": "train", "vocab_size": 300}})
    refused = [p.message for p in native.check(init, Host()) if p.where == "adapter.type"]
    assert len(refused) == 1 and "model.path" in refused[0]
