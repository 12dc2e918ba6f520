"""Packing: FFD rows by hand, and the equivalence that makes packing safe.

The key test: on tiny random-init Llama and Qwen2 models (fp32, CPU), a packed batch gives the same
per-token logits, summed loss, loss with num_items_in_batch, and gradients as the same examples
unpacked, one per row, padded. Negative controls show the comparison has teeth: without the mask,
with a bool mask on eager, and with position_ids alone while the model builds a cache, it differs.
"""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from trainhub.data.batches import Examples, collate, count_targets
from trainhub.data.chat import IGNORE
from trainhub.data.packing import collate_packed, mask_kind_for, pack_ffd, packing_stats

# ----------------------------------------------------------------------------- FFD


def test_ffd_by_hand():
    # Longest first: 5 opens row 0 (3 left), 4 opens row 1 (4 left), 3 -> row 0 (0 left), the second
    # 3 -> row 1 (1 left), 2 opens row 2 (6 left), 2 -> row 2 (4 left), 1 -> row 1, the first with room.
    assert pack_ffd([5, 4, 3, 3, 2, 2, 1], 8) == [[0, 2], [1, 3, 6], [4, 5]]
    # Ties keep index order; input order does not matter otherwise.
    assert pack_ffd([1, 2, 2, 3, 3, 4, 5], 8) == [[6, 3], [5, 4, 0], [1, 2]]
    # Items that fill a row exactly, and a row opened for an item that fits nowhere else.
    assert pack_ffd([6, 4, 6, 4, 7], 10) == [[4], [0, 1], [2, 3]]
    assert pack_ffd([10, 10], 10) == [[0], [1]]
    assert pack_ffd([], 10) == []


def test_ffd_sorts_first():
    # First fit in input order needs 4 rows here (2+5+1 | 4+3 | 7 | 8); longest first fills 3 exactly:
    # 8 | 7 | 5, then 4 -> row 2, 3 -> row 1, 2 -> row 0, 1 -> row 2.
    assert pack_ffd([2, 5, 4, 7, 1, 3, 8], 10) == [[6, 0], [3, 5], [1, 2, 4]]


@pytest.mark.parametrize("bad", [[3, 11], [0], [-1]])
def test_ffd_refuses_lengths_outside_1_to_max(bad):
    with pytest.raises(ValueError, match="truncate or drop longer examples first"):
        pack_ffd(bad, 10)


def naive_ffd(lengths, max_length):
    rows, free = [], []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        r = next((r for r, f in enumerate(free) if f >= lengths[i]), len(rows))
        if r == len(rows):
            rows.append([])
            free.append(max_length)
        rows[r].append(i)
        free[r] -= lengths[i]
    return rows


@pytest.mark.parametrize("seed", range(20))
def test_ffd_properties_on_random_lengths(seed):
    rng = random.Random(seed)
    max_length = rng.choice([8, 64, 512])
    lengths = [rng.randint(1, max_length) if rng.random() < 0.3 else rng.randint(1, max_length // 4 + 1)
               for _ in range(rng.randint(1, 300))]
    rows = pack_ffd(lengths, max_length)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))  # each exactly once
    assert all(sum(lengths[i] for i in row) <= max_length for row in rows)
    assert rows == naive_ffd(lengths, max_length) == pack_ffd(lengths, max_length)  # first fit, deterministic
    assert len(rows) <= 11 / 9 * (sum(lengths) / max_length + 1) + 1  # FFD <= 11/9 OPT + 6/9, OPT >= sum/max


def test_packing_stats():
    lengths = [5, 4, 3, 3, 2, 2, 1]
    stats = packing_stats(lengths, pack_ffd(lengths, 8), 8)
    assert stats == {"examples": 7, "rows": 3, "tokens": 20, "fill": 20 / 24}


# ----------------------------------------------------------------------------- collation


def examples_of(lengths, vocab=64, seed=0) -> Examples:
    """Random ids; labels: a prompt prefix unlabelled (as SFT), but example 1 labels every token
    (train_on: all), so its first token's label must be dropped by packing, not by the data."""
    g = torch.Generator().manual_seed(seed)
    ids, labels = [], []
    for k, n in enumerate(lengths):
        x = torch.randint(1, vocab, (n,), generator=g)
        y = x.clone()
        y[: 0 if k == 1 else n // 3] = IGNORE
        ids.append(x)
        labels.append(y)
    return Examples(ids, labels)


def test_collate_packed_by_hand():
    ex = Examples([torch.tensor([11, 12, 13]), torch.tensor([21, 22]), torch.tensor([31, 32, 33, 34])],
                  [torch.tensor([11, 12, 13]), torch.tensor([IGNORE, 22]), torch.tensor([IGNORE, 32, 33, 34])])
    rows = pack_ffd([3, 2, 4], 5)
    assert rows == [[2], [0, 1]]
    b = collate_packed(ex, rows, pad_id=0, mask_kind="bool", length=5)
    assert b["input_ids"].tolist() == [[31, 32, 33, 34, 0], [11, 12, 13, 21, 22]]
    assert b["labels"].tolist() == [[IGNORE, 32, 33, 34, IGNORE], [IGNORE, 12, 13, IGNORE, 22]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 3, 0], [0, 1, 2, 0, 1]]
    assert b["attention_mask"].shape == (2, 1, 5, 5) and b["attention_mask"].dtype == torch.bool
    assert b["attention_mask"][1, 0].int().tolist() == [[1, 0, 0, 0, 0],
                                                        [1, 1, 0, 0, 0],
                                                        [1, 1, 1, 0, 0],
                                                        [0, 0, 0, 1, 0],
                                                        [0, 0, 0, 1, 1]]
    assert b["attention_mask"][0, 0, 4].int().tolist() == [0, 0, 0, 0, 1]  # padding sees only itself
    f = collate_packed(ex, rows, pad_id=0, mask_kind="float", length=5)["attention_mask"]
    assert f.dtype == torch.float32 and torch.equal(f == 0, b["attention_mask"])
    assert (f[f != 0] == torch.finfo(torch.float32).min).all()
    v = collate_packed(ex, rows, pad_id=0, mask_kind="varlen", length=5)
    assert v["input_ids"].tolist() == [[31, 32, 33, 34, 0, 11, 12, 13, 21, 22]]
    assert v["position_ids"].tolist() == [[0, 1, 2, 3, 0, 0, 1, 2, 0, 1]]
    assert v["cu_seq_lens_q"].tolist() == [0, 4, 5, 8, 10] and v["cu_seq_lens_q"].dtype == torch.int32
    assert (v["max_length_q"], v["max_length_k"]) == (4, 4) and "attention_mask" not in v
    # Without a length, rows are as wide as the fullest row of the batch.
    assert collate_packed(ex, [[2]], pad_id=0, mask_kind="bool")["input_ids"].shape == (1, 4)


def test_varlen_boundaries_are_what_flash_attention_infers_from_position_ids():
    from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

    ex = examples_of([9, 3, 7, 5, 2, 12, 4, 6, 10])
    v = collate_packed(ex, pack_ffd([len(x) for x in ex.input_ids], 16), 0, "varlen", length=16)
    (cu_q, cu_k), (max_q, _) = prepare_fa_kwargs_from_position_ids(v["position_ids"])
    assert torch.equal(v["cu_seq_lens_q"], cu_q) and torch.equal(v["cu_seq_lens_k"], cu_k)
    assert v["max_length_q"] == int(max_q)


def test_refusals():
    ex = examples_of([4, 4])
    with pytest.raises(ValueError, match="more than the row length 6"):
        collate_packed(ex, [[0, 1]], 0, "bool", length=6)
    with pytest.raises(ValueError, match="unknown mask_kind 'causal'"):
        collate_packed(ex, [[0]], 0, "causal")
    with pytest.raises(ValueError, match="packing does not support attention 'flex_attention'"):
        mask_kind_for("flex_attention")
    assert [mask_kind_for(a) for a in ("sdpa", "eager", "flash_attention_2")] == ["bool", "float", "varlen"]


# ----------------------------------------------------------------------------- equivalence on real models

LENGTHS, MAX_LENGTH = [9, 3, 7, 5, 2, 12, 4, 6, 10], 16  # 4 rows, the last 10 tokens + 6 padding


def tiny_model(family: str, attention: str):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    config_cls, model_cls = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[family]
    config = config_cls(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0)
    config._attn_implementation = attention
    torch.manual_seed(0)
    return model_cls(config).float()


def per_document_logits(model, batch, ex, rows, width):
    """Logits of each example's own positions, keyed by example index."""
    logits = model(**batch).logits.reshape(-1, width, model.config.vocab_size)
    out = {}
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            out[i] = logits[r, start:start + len(ex.input_ids[i])]
            start += len(ex.input_ids[i])
    return out


def run_unpacked(model, ex):
    batch = collate(ex, list(range(len(ex))), pad_id=0)
    width = batch["input_ids"].shape[1]
    logits = per_document_logits(model, batch, ex, [[i] for i in range(len(ex))], width)
    return batch, logits


def loss_sum(model, batch):
    """Summed token loss, as the model's loss computes it (labels shifted by one, -100 ignored) but
    summed in float64: a float32 sum near 166 has a resolution of 1.5e-5, coarser than the 1e-5 asked."""
    logits = model(**batch).logits.double()
    targets = F.pad(batch["labels"], (0, 1), value=IGNORE)[:, 1:]
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE, reduction="sum")


def grads(model, batch, n):
    model.zero_grad()
    model(**batch, num_items_in_batch=torch.tensor(n)).loss.backward()
    return {k: p.grad.clone() for k, p in model.named_parameters()}


CASES = [("llama", "sdpa", "bool"), ("llama", "sdpa", "float"), ("llama", "eager", "float"),
         ("qwen2", "sdpa", "bool"), ("qwen2", "sdpa", "float"), ("qwen2", "eager", "float")]


@pytest.mark.parametrize(("family", "attention", "kind"), CASES, ids=["-".join(c) for c in CASES])
def test_packed_equals_unpacked(family, attention, kind):
    model = tiny_model(family, attention)
    ex = examples_of(LENGTHS)
    rows = pack_ffd(LENGTHS, MAX_LENGTH)
    assert len(rows) == 4 and packing_stats(LENGTHS, rows, MAX_LENGTH)["fill"] == 58 / 64
    packed = collate_packed(ex, rows, pad_id=0, mask_kind=kind, length=MAX_LENGTH)
    unpacked, want = run_unpacked(model, ex)
    n = count_targets(unpacked)
    assert count_targets(packed) == n  # the label rule drops exactly what the shift drops unpacked

    got = per_document_logits(model, packed, ex, rows, MAX_LENGTH)
    for i in range(len(LENGTHS)):
        torch.testing.assert_close(got[i], want[i], rtol=0, atol=1e-5)
    assert torch.allclose(loss_sum(model, packed), loss_sum(model, unpacked), rtol=0, atol=1e-5)
    # The model's own float32 loss: the mean over targets, and with num_items_in_batch (as the engine calls it).
    torch.testing.assert_close(model(**packed).loss, model(**unpacked).loss, rtol=0, atol=1e-6)
    k = torch.tensor(n)
    assert torch.allclose(model(**packed, num_items_in_batch=k).loss, model(**unpacked, num_items_in_batch=k).loss,
                          rtol=0, atol=1e-5)
    g_packed, g_unpacked = grads(model, packed, n), grads(model, unpacked, n)
    for name in g_packed:
        torch.testing.assert_close(g_packed[name], g_unpacked[name], rtol=0, atol=1e-5, msg=name)


@torch.no_grad()
def max_logit_gap(model, batch, ex, rows, want):
    got = per_document_logits(model, batch, ex, rows, MAX_LENGTH)
    return max(float((got[i] - want[i]).abs().max()) for i in want)


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_what_does_not_keep_documents_apart(family):
    ex, rows = examples_of(LENGTHS), pack_ffd(LENGTHS, MAX_LENGTH)
    packed = collate_packed(ex, rows, pad_id=0, mask_kind="bool", length=MAX_LENGTH)
    for attention in ("sdpa", "eager"):
        model = tiny_model(family, attention)
        _, want = run_unpacked(model, ex)
        no_mask = {k: v for k, v in packed.items() if k != "attention_mask"}
        # position_ids alone: transformers builds the block mask only without a cache, and the model
        # makes one unless told use_cache=False (its config default is True, in train mode too).
        assert max_logit_gap(model, no_mask, ex, rows, want) > 1e-2
        assert max_logit_gap(model, {**no_mask, "use_cache": False}, ex, rows, want) < 1e-5
        if attention == "eager":  # a bool mask is added to the scores as 0/1: nothing is masked
            assert max_logit_gap(model, packed, ex, rows, want) > 1e-2


def reference_varlen_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                               cu_seq_lens_q=None, **kwargs):
    """What flash_attn_varlen_func computes, in plain PyTorch: causal attention within each
    [cu[j], cu[j+1]) of the flattened row, for the keywords flash attention reads."""
    assert attention_mask is None and cu_seq_lens_q is not None and query.shape[0] == 1
    rep = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(rep, dim=1), value.repeat_interleave(rep, dim=1)
    out = torch.empty_like(query)
    bounds = cu_seq_lens_q.tolist()
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        out[:, :, s:e] = F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e],
                                                        is_causal=True, scale=scaling)
    return out.transpose(1, 2).contiguous(), None


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_varlen_keywords_reach_the_attention_and_match_unpacked(family):
    """Flash attention itself needs a GPU; this checks that the "varlen" batch drives a varlen kernel
    through model(**batch) (the same keywords FA2 reads) to the unpacked result."""
    from transformers import AttentionInterface

    AttentionInterface.register("trainhub_reference_varlen", reference_varlen_attention)
    model = tiny_model(family, "trainhub_reference_varlen")
    ex, rows = examples_of(LENGTHS), pack_ffd(LENGTHS, MAX_LENGTH)
    packed = collate_packed(ex, rows, pad_id=0, mask_kind="varlen", length=MAX_LENGTH)
    eager = tiny_model(family, "eager")
    unpacked, want = run_unpacked(eager, ex)
    assert max_logit_gap(model, packed, ex, rows, want) < 1e-5
    n = torch.tensor(count_targets(unpacked))
    assert torch.allclose(model(**packed, num_items_in_batch=n).loss, eager(**unpacked, num_items_in_batch=n).loss,
                          rtol=0, atol=1e-5)
