"""trainhub's own Llama / Qwen2 / Qwen3 against transformers' (fp32, CPU, tiny odd-sized random configs).

What is checked, each against a reference:
- logits (hidden @ head_weight.T) equal transformers' to FP32 (1e-5), GQA, tied and untied heads,
  biases, explicit head_dim, Llama 3 RoPE scaling; also gradients of the same loss;
- packing: a packed row (4-D bool mask, additive float mask, varlen) gives each document the
  logits it gets alone, and equals transformers on the same packed batch;
- HF checkpoints (single file and sharded) load, train one step, save, and transformers loads the
  result with our logits; LoRA adapters cross between the two models both ways with equal logits;
  merge_and_unload then save gives an HF folder with equal logits;
- initialisation follows transformers' distribution and is reproducible from the seed;
- the registry picks the path a job takes and says why; the hf path gives the same interface.
Weights are redrawn at std 0.2 (norms around 1) before comparing: transformers' own 0.02 init gives
logits so small that a wrong model could pass a 1e-5 test.
"""

from __future__ import annotations

import json
import random

import pytest
import torch

from trainhub.data.batches import Examples
from trainhub.data.packing import collate_packed
from trainhub.engine.loss import cross_entropy
from trainhub.engine.model import count_model
from trainhub.engine.models import build_model, choose, head_weight, hidden_states, model_path, save_merged
from trainhub.engine.models.hf_io import save_hf
from trainhub.engine.models.hf_names import args_from_hf, from_hf, hf_parameter_names
from trainhub.engine.models.own import add_lora, load_hf, load_lora
from trainhub.engine.models.transformer import CausalLM
from trainhub.job import Job, LoraAdapter

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

FP32 = 1e-5
"""Logit tolerance in float32: the same operations in a different order (measured max: 0 to 3e-6)."""

LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 500_000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}
CONFIGS = {
    # GQA 6:2, untied, Llama 3 scaling: head_dim 8 gives wavelengths 6, 167, 4443 and 118k; with an original
    # context of 16 the first lies in the blended band (4..16), the other three are stretched by 8
    "llama-gqa-llama3": ("LlamaConfig", dict(vocab_size=97, hidden_size=48, intermediate_size=71, num_hidden_layers=2,
                                             num_attention_heads=6, num_key_value_heads=2, rope_parameters=LLAMA3_ROPE)),
    # tied, all biases, head_dim 10 apart from hidden / heads = 12
    "llama-tied-bias": ("LlamaConfig", dict(vocab_size=83, hidden_size=48, intermediate_size=37, num_hidden_layers=2,
                                            num_attention_heads=4, num_key_value_heads=4, head_dim=10,
                                            attention_bias=True, mlp_bias=True, tie_word_embeddings=True)),
    # q/k/v biases, one key/value head for five query heads, tied
    "qwen2-mqa-tied": ("Qwen2Config", dict(vocab_size=101, hidden_size=40, intermediate_size=57, num_hidden_layers=2,
                                           num_attention_heads=5, num_key_value_heads=1, tie_word_embeddings=True)),
    # per-head q/k norm, head_dim 14 with hidden 36
    "qwen3-headdim": ("Qwen3Config", dict(vocab_size=89, hidden_size=36, intermediate_size=50, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, head_dim=14)),
}


def hf_model(name: str, attention: str = "sdpa", seed: int = 0):
    cls, fields = CONFIGS[name]
    config = getattr(transformers, cls)(**fields, pad_token_id=0)
    config._attn_implementation = attention
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2 + (1.0 if "norm" in n else 0.0))
    return model


def ours_like(hf) -> CausalLM:
    args = args_from_hf(hf.config)
    model = CausalLM(args).eval()
    model.load_state_dict(from_hf(hf.state_dict(), args))
    return model


def logits(model, **batch) -> torch.Tensor:
    return hidden_states(model, batch) @ head_weight(model).T


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_and_gradients_equal_transformers(name):
    hf = hf_model(name)
    ours = ours_like(hf)
    ids = torch.randint(0, hf.config.vocab_size, (3, 13), generator=torch.Generator().manual_seed(1))
    ours_logits = logits(ours, input_ids=ids)
    torch.testing.assert_close(ours_logits, hf(ids).logits, atol=FP32, rtol=0)
    # Right padding with a 2-D mask: real positions match (attention.py says why pads may differ).
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 4:] = 0
    ref = hf(ids, attention_mask=mask).logits
    got = logits(ours, input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(got[mask.bool()], ref[mask.bool()], atol=FP32, rtol=0)
    # Gradients of the same loss, on every weight.
    labels = ids.masked_fill(mask == 0, -100)
    n = int((labels[:, 1:] != -100).sum())
    hf(ids, attention_mask=mask, labels=labels, num_items_in_batch=torch.tensor(n)).loss.backward()
    cross_entropy(hidden_states(ours, {"input_ids": ids, "attention_mask": mask}), head_weight(ours), labels,
                  n).backward()
    hf_grads = dict(hf.named_parameters())
    for name_, p in ours.named_parameters():
        torch.testing.assert_close(p.grad, hf_grads[name_].grad, atol=FP32, rtol=1e-4, msg=name_)


def documents(lengths: list[int], vocab: int, seed: int = 0) -> Examples:
    gen = torch.Generator().manual_seed(seed)
    ids = [torch.randint(1, vocab, (n,), generator=gen) for n in lengths]
    return Examples(input_ids=ids, labels=[x.clone() for x in ids])


@pytest.mark.parametrize("kind", ["bool", "float", "varlen"])
@pytest.mark.parametrize("name", ["llama-gqa-llama3", "qwen3-headdim"])
def test_packed_rows_equal_documents_alone(name, kind):
    hf = hf_model(name, attention="eager" if kind == "float" else "sdpa")
    ours = ours_like(hf)
    lengths = [5, 3, 7, 4, 2, 6]
    examples = documents(lengths, hf.config.vocab_size)
    rows = [[0, 1, 3], [2, 5], [4]]
    batch = collate_packed(examples, rows, pad_id=0, mask_kind=kind, length=14)
    packed = logits(ours, **batch).reshape(len(rows), 14, -1)
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            alone = logits(ours, input_ids=examples.input_ids[i][None])[0]
            torch.testing.assert_close(packed[r, start:start + lengths[i]], alone, atol=FP32, rtol=0)
            start += lengths[i]
    if kind != "varlen":  # transformers on the same packed batch (varlen is flash-only there)
        ref = hf(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits
        torch.testing.assert_close(packed, ref, atol=FP32, rtol=0)


def test_varlen_batch_loss_and_gradients_equal_bool_mask():
    hf = hf_model("qwen2-mqa-tied")
    examples = documents([5, 3, 7, 4, 2, 6], hf.config.vocab_size)
    rows = [[0, 1, 3], [2, 5], [4]]
    grads = []
    for kind in ("bool", "varlen"):
        ours = ours_like(hf)
        batch = collate_packed(examples, rows, pad_id=0, mask_kind=kind, length=14)
        n = int((batch["labels"] != -100).sum())
        loss = cross_entropy(hidden_states(ours, batch), head_weight(ours), batch["labels"], n)
        loss.backward()
        grads.append((loss.detach(), [p.grad for p in ours.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=FP32, rtol=0)
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(a, b, atol=FP32, rtol=1e-4)


def test_gradient_checkpointing_gives_the_same_gradients():
    hf = hf_model("qwen3-headdim")
    ids = torch.randint(0, hf.config.vocab_size, (2, 9), generator=torch.Generator().manual_seed(3))
    grads = []
    for on in (False, True):
        ours = ours_like(hf).train()
        ours.grad_checkpointing = on
        cross_entropy(ours(ids), ours.head_weight, ids, 16).backward()
        grads.append([p.grad for p in ours.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("name", ["llama-gqa-llama3", "qwen2-mqa-tied"])
@pytest.mark.parametrize("shard", [False, True])
def test_checkpoint_loads_trains_and_saves_for_transformers(tmp_path, name, shard):
    hf = hf_model(name)
    hf.save_pretrained(tmp_path / "hf", max_shard_size="40KB" if shard else "5GB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file() == shard
    ours = load_hf(tmp_path / "hf")
    assert ours.config.tie_word_embeddings == (ours.lm_head.weight is ours.model.embed_tokens.weight)
    ids = torch.randint(0, hf.config.vocab_size, (2, 11), generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(logits(ours, input_ids=ids), hf(ids).logits, atol=FP32, rtol=0)
    opt = torch.optim.SGD(ours.parameters(), lr=0.5)
    cross_entropy(ours(ids), ours.head_weight, ids, 20).backward()
    opt.step()
    trained = logits(ours, input_ids=ids)
    assert (trained - hf(ids).logits).abs().max() > 1e-2  # the step changed the model
    save_hf(ours, tmp_path / "ours", shard_bytes=40_000 if shard else 5 * 2**30)
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    assert type(back) is type(hf)
    torch.testing.assert_close(back(ids).logits, trained, atol=FP32, rtol=0)
    torch.testing.assert_close(logits(load_hf(tmp_path / "ours"), input_ids=ids), trained, atol=0, rtol=0)


def randomize_lora(model, seed: int) -> None:
    """LoRA's B starts at zero (the adapter is a no-op); draw every adapter weight so the test means something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


@pytest.mark.parametrize("name", ["llama-tied-bias", "qwen3-headdim"])
def test_lora_adapters_cross_between_the_models(tmp_path, name):
    hf = hf_model(name)
    ours = add_lora(ours_like(hf), LoraAdapter(rank=4, alpha=8.0, targets="all-linear"))
    randomize_lora(ours, 5)
    ids = torch.randint(0, hf.config.vocab_size, (2, 10), generator=torch.Generator().manual_seed(4))
    with_adapter = logits(ours, input_ids=ids)
    assert (with_adapter - hf(ids).logits).abs().max() > 1e-2  # the adapter does something
    ours.save_pretrained(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert sorted(saved["target_modules"]) == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj",
                                               "v_proj"]
    on_hf = peft.PeftModel.from_pretrained(hf_model(name), tmp_path / "adapter").eval()
    torch.testing.assert_close(on_hf(ids).logits, with_adapter, atol=FP32, rtol=0)
    # The other way: an adapter trained on transformers' model, loaded onto ours.
    hf_lora = peft.get_peft_model(hf_model(name), peft.LoraConfig(r=3, lora_alpha=5, target_modules="all-linear",
                                                                    task_type="CAUSAL_LM"))
    randomize_lora(hf_lora, 6)
    hf_lora.save_pretrained(tmp_path / "hf_adapter")
    mine = load_lora(ours_like(hf), tmp_path / "hf_adapter")
    torch.testing.assert_close(logits(mine, input_ids=ids), hf_lora(ids).logits, atol=FP32, rtol=0)
    # Merge and save: a plain HF folder with the adapted logits.
    save_merged(ours, tmp_path / "merged")
    merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    torch.testing.assert_close(merged(ids).logits, with_adapter, atol=FP32, rtol=0)


def tiny_job(**model) -> Job:
    return Job(name="t", model=model, method="pretrain", data={"train": "x.jsonl", "format": "text"},
               train={"max_steps": 1})


class Tok:
    """What build_model reads of a tokenizer."""

    def __init__(self, n=67):
        self.n, self.pad_token_id, self.bos_token_id, self.eos_token_id = n, 3, 1, 2

    def __len__(self):
        return self.n


def test_init_follows_transformers_and_is_seeded():
    arch = {"family": "qwen2", "hidden_size": 64, "intermediate_size": 96, "num_layers": 2, "num_heads": 4,
            "num_kv_heads": 2, "tie_embeddings": False}
    model = build_model(tiny_job(init=arch), Tok())
    assert model.config.pad_token_id == 3 and model.config.qkv_bias and not model.config.o_bias
    for n, p in model.named_parameters():
        if "norm" in n:
            assert torch.equal(p, torch.ones_like(p)), n
        elif n.endswith("bias"):
            assert torch.equal(p, torch.zeros_like(p)), n
        else:  # N(0, 0.02): the sample std of >= 4,096 draws lies within 5% of 0.02 (4 sigma)
            drawn = p[torch.arange(len(p)) != 3] if n == "model.embed_tokens.weight" else p
            assert abs(drawn.std().item() - 0.02) < 1e-3 and abs(drawn.mean().item()) < 1e-3, n
    assert torch.equal(model.model.embed_tokens.weight[3], torch.zeros(64))
    again = build_model(tiny_job(init=arch), Tok())
    other = build_model(Job(**{**tiny_job(init=arch).model_dump(), "seed": 1}), Tok())
    for (n, a), b, c in zip(model.state_dict().items(), again.state_dict().values(), other.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), n
        assert "norm" in n or n.endswith("bias") or not torch.equal(a, c), n
    ref = transformers.AutoModelForCausalLM.from_config(transformers.Qwen2Config(
        vocab_size=67, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, pad_token_id=3))
    assert sorted(ref.state_dict()) == sorted(model.state_dict())
    assert hf_parameter_names(model.config) == [n for n in ref.state_dict()]
    assert count_model(model) == count_model(ref)  # engine/model.py's MFU counts read our model too
    tied = build_model(tiny_job(init={**arch, "family": "qwen3", "tie_embeddings": True, "head_dim": 20}), Tok())
    assert tied.lm_head.weight is tied.model.embed_tokens.weight
    assert tied.rope_freq.shape == (10,) and tied.rope_freq[0] == 1.0


def test_registry_picks_the_path_and_says_why(tmp_path):
    assert choose(tiny_job(init={"family": "qwen3", "hidden_size": 32, "intermediate_size": 64, "num_layers": 1,
                                 "num_heads": 2, "head_dim": 24}))[0] == "own"
    cases = {"llama": ({"model_type": "llama"}, "own"),
             "qwen2": ({"model_type": "qwen2", "use_sliding_window": False, "sliding_window": 4096}, "own"),
             "window": ({"model_type": "qwen2", "use_sliding_window": True, "sliding_window": 4096}, "hf"),
             "yarn": ({"model_type": "qwen3", "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "hf"),
             "mistral": ({"model_type": "mistral"}, "hf")}
    for name, (config, path) in cases.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config))
        job = tiny_job(path=str(tmp_path / name))
        assert choose(job)[0] == path, name
        assert ("own decoder" if path == "own" else "AutoModelForCausalLM") in model_path(job)
    assert "sliding-window" in model_path(tiny_job(path=str(tmp_path / "window")))
    assert choose(tiny_job(path="someone/not-on-disk"))[0] is None
    # model.attention names transformers' implementations: auto takes transformers' model, own refuses
    for attention in ("eager", "flash_attention_2"):
        job = tiny_job(path=str(tmp_path / "llama"), attention=attention)
        assert choose(job) == ("hf", f"model.attention is {attention}, which transformers' model implements")
        with pytest.raises(ValueError, match=f"model.attention {attention} is transformers' implementation"):
            choose(tiny_job(path=str(tmp_path / "llama"), attention=attention, impl="own"))


def test_hf_path_gives_the_same_interface(tmp_path):
    """A model the own path does not take (sliding window) goes through transformers: build, hidden states,
    head and loss equal transformers' own forward; LoRA on it too."""
    hf = hf_model("qwen2-mqa-tied")
    hf.config.use_sliding_window, hf.config.sliding_window, hf.config.max_window_layers = True, 64, 0
    hf.config.layer_types = ["sliding_attention"] * 2
    hf.save_pretrained(tmp_path / "m")
    job = tiny_job(path=str(tmp_path / "m"))
    assert choose(job)[0] == "hf"
    model = build_model(job, Tok(101)).eval()
    assert not isinstance(model, CausalLM)
    ids = torch.randint(0, 101, (2, 9), generator=torch.Generator().manual_seed(7))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    ref = model(**batch, num_items_in_batch=torch.tensor(16)).loss
    loss = cross_entropy(hidden_states(model, batch), head_weight(model), ids, torch.tensor(16))
    torch.testing.assert_close(loss, ref, atol=FP32, rtol=0)
    lora = build_model(Job(**{**job.model_dump(), "adapter": {"type": "lora", "rank": 2}}), Tok(101))
    randomize_lora(lora, 1)
    torch.testing.assert_close(hidden_states(lora, batch) @ head_weight(lora).T, lora(**batch).logits,
                               atol=FP32, rtol=0)


def test_own_path_from_a_checkpoint_with_lora(tmp_path):
    hf = hf_model("llama-gqa-llama3")
    hf.save_pretrained(tmp_path / "m")
    job = Job(**{**tiny_job(path=str(tmp_path / "m")).model_dump(), "adapter": {"type": "lora", "rank": 2,
                                                                               "targets": ["q_proj", "v_proj"]}})
    model = build_model(job, Tok(97))
    assert isinstance(model.get_base_model(), CausalLM)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n and ("q_proj" in n or "v_proj" in n) for n in trainable)
    ids = torch.tensor([[random.Random(0).randrange(97) for _ in range(8)]])
    torch.testing.assert_close(logits(model, input_ids=ids), hf(ids).logits, atol=FP32, rtol=0)


@pytest.mark.parametrize("lora", [False, True])
def test_engine_checkpoints_restore_our_model(tmp_path, lora):
    """engine/checkpoint.py saves with save_pretrained and restores with load_state_dict / peft's state
    loader: both work on our model as on transformers' (tied head included)."""
    from trainhub.engine.checkpoint import _load_weights

    def fresh():
        model = ours_like(hf_model("qwen2-mqa-tied"))
        return add_lora(model, LoraAdapter(rank=2, targets=["q_proj"])) if lora else model

    trained = fresh()
    if lora:
        randomize_lora(trained, 2)
    else:
        torch.nn.init.normal_(trained.model.norm.weight)
    trained.save_pretrained(tmp_path)
    restored = fresh()
    _load_weights(tmp_path, restored)
    ids = torch.randint(0, 101, (1, 7), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(logits(restored, input_ids=ids), logits(trained, input_ids=ids), atol=0, rtol=0)


@pytest.mark.parametrize("kind", ["bool", "float"])
def test_masked_gqa_under_grad_repeats_kv_and_equals_enable_gqa(kind):
    """Under a mask with gradients recorded, attend repeats k and v to every query head (SDPA's masked fused
    kernels take no enable_gqa; engine/models/attention.py): the same output and gradients as SDPA's
    enable_gqa on the same tensors, and without gradients the uncopied path."""
    from trainhub.engine.models.attention import Documents, attend

    gen = torch.Generator().manual_seed(0)
    q = torch.randn(2, 9, 6, 8, generator=gen, requires_grad=True)
    k, v = (torch.randn(2, 9, 2, 8, generator=gen, requires_grad=True) for _ in range(2))
    keep = torch.ones(2, 1, 9, 9, dtype=torch.bool).tril()
    keep[1, :, :, :3] = False  # a left-padded row: its first 3 keys hidden
    keep |= torch.eye(9, dtype=torch.bool)  # every query sees itself
    mask = keep if kind == "bool" else torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))
    got = attend(q, k, v, Documents(mask=mask), 0.35)
    want = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask, scale=0.35,
        enable_gqa=True).transpose(1, 2)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    grads = torch.autograd.grad(got.square().sum(), (q, k, v))
    for g, w in zip(grads, torch.autograd.grad(want.square().sum(), (q, k, v)), strict=True):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(attend(q, k, v, Documents(mask=mask), 0.35), want, atol=1e-6, rtol=1e-6)
