"""The GGUF converter without llama.cpp: the rotary re-layout is the same rotation, every tensor and
tokenizer field round-trips through the gguf package's reader, and what cannot be converted is refused."""

from __future__ import annotations

import typing

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from tests.export.models import build, tokenizer  # noqa: E402
from trainhub.export import gguf_arch, gguf_vocab, gguf_write  # noqa: E402
from trainhub.export.gguf_arch import ConvertError  # noqa: E402


def test_halves_to_pairs_is_the_same_rotation():
    """HF rotates (i, i + d/2) pairs (rotate_half); llama.cpp's LLAMA rope rotates (2i, 2i + 1). Rotating
    a re-laid-out q with adjacent pairs must give the re-laid-out HF rotation, for every head."""
    heads, d, pos = 3, 8, 5
    q = torch.randn(heads * d)
    inv = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
    angle = pos * inv
    cos, sin = torch.cat([angle.cos(), angle.cos()]), torch.cat([angle.sin(), angle.sin()])

    def hf(x):  # transformers' apply_rotary_pos_emb on one head
        half = torch.cat([-x[d // 2:], x[: d // 2]])
        return x * cos + half * sin

    def pairs(x):  # rotate adjacent pairs (GPT-J / llama.cpp NORM)
        a, b = x[0::2], x[1::2]
        out = torch.empty_like(x)
        out[0::2], out[1::2] = a * angle.cos() - b * angle.sin(), a * angle.sin() + b * angle.cos()
        return out

    rotated_hf = torch.cat([hf(h) for h in q.view(heads, d)])
    moved = torch.from_numpy(gguf_arch.halves_to_pairs(q.numpy()[:, None], heads)[:, 0])
    moved_then_rotated = torch.cat([pairs(h) for h in moved.view(heads, d)])
    expected = torch.from_numpy(gguf_arch.halves_to_pairs(rotated_hf.numpy()[:, None], heads)[:, 0])
    torch.testing.assert_close(moved_then_rotated, expected)


def test_gguf_types_are_one_list():
    from trainhub.job import GGUF_TYPES, GGUFType

    assert tuple(gguf_write.QUANTS) == GGUF_TYPES == typing.get_args(GGUFType)


@pytest.mark.slow  # builds and saves a model
@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "gpt2"])
def test_f32_round_trip(tmp_path, family):
    """Every weight is in the file under its GGUF name, equal to the HF weight in ggml's layout; the
    hyperparameters and the tokenizer are in the metadata."""
    from transformers import AutoModelForCausalLM

    from trainhub.export.source import load_tokenizer

    folder = build(family, tmp_path / family, width=64, ffn=128)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    tok = load_tokenizer(folder)
    info = gguf_write.write(model, tok, tmp_path / "m.gguf", "f32")
    reader = gguf.GGUFReader(tmp_path / "m.gguf")
    fields = {k: f.contents() for k, f in reader.fields.items()}
    arch = {"llama": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "gpt2": "gpt2"}[family]
    assert fields["general.architecture"] == arch
    assert fields[f"{arch}.block_count"] == 2 and fields[f"{arch}.embedding_length"] == 64
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    assert fields["tokenizer.ggml.tokens"] == [tok.convert_ids_to_tokens(i) for i in range(len(tok))]
    assert fields["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
    assert fields["tokenizer.ggml.padding_token_id"] == tok.pad_token_id
    assert fields["tokenizer.chat_template"] == tok.chat_template
    types = fields["tokenizer.ggml.token_type"]
    assert types[tok.eos_token_id] == gguf.TokenType.CONTROL and types[300] == gguf.TokenType.NORMAL
    merges = fields["tokenizer.ggml.merges"]
    assert len(merges) == info["tokenizer"]["merges"] > 0 and all(len(m.split(" ")) == 2 for m in merges)
    tensors = {t.name: np.asarray(t.data).reshape(list(reversed(t.shape.tolist()))) for t in reader.tensors}
    expected = {t.name: t.data for t in gguf_arch.tensors(model)}
    assert set(tensors) == set(expected)
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    for name, data in expected.items():
        np.testing.assert_array_equal(tensors[name].reshape(data.shape), data, err_msg=name)
    if family == "llama":  # q is re-laid out for llama.cpp's rotary; qwen's are kept as they are
        q = model.model.layers[0].self_attn.q_proj.weight.detach().numpy()
        assert not np.array_equal(expected["blk.0.attn_q.weight"], q)
    if family == "gpt2":  # Conv1D [in, out] stored as [out, in]
        c_attn = model.transformer.h[0].attn.c_attn.weight.detach().numpy()
        np.testing.assert_array_equal(expected["blk.0.attn_qkv.weight"], c_attn.T)


@pytest.mark.slow  # builds and saves a model
def test_q8_0_keeps_rows_that_do_not_fill_a_block_in_f16(tmp_path):
    from transformers import AutoModelForCausalLM

    from trainhub.export.source import load_tokenizer

    folder = build("llama", tmp_path / "m", width=48, ffn=96)  # rows of 48 = 1.5 blocks of 32; 96 = 3 blocks
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    info = gguf_write.write(model, load_tokenizer(folder), tmp_path / "m.gguf", "q8_0")
    # down_proj (rows of 96) in q8_0, the other 13 matrices (rows of 48) in f16, norms in f32
    assert info["tensor_types"] == {"F16": 13, "Q8_0": 2, "F32": 5}
    assert gguf_write.tensor_types(tmp_path / "m.gguf") == info["tensor_types"]


def test_pre_tokenizers():
    assert gguf_vocab.pre_tokenizer_name({"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}) == "gpt-2"
    for regex, name in gguf_vocab.KNOWN_SPLITS.items():
        spec = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
        assert gguf_vocab.pre_tokenizer_name(spec) == name
    with pytest.raises(ConvertError, match="regex llama.cpp has no name for"):
        gguf_vocab.pre_tokenizer_name({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": r"\w+"}, "behavior": "Isolated"},
            {"type": "ByteLevel", "use_regex": False}]})
    with pytest.raises(ConvertError, match="not one llama.cpp reproduces"):
        gguf_vocab.pre_tokenizer_name({"type": "Metaspace"})


@pytest.mark.slow  # builds and saves a model
def test_unsupported_models_are_refused(tmp_path):
    from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig

    from trainhub.export.source import load_tokenizer

    tok = tokenizer()
    with pytest.raises(ConvertError, match="supports the families llama, qwen2, qwen3, gpt2; this model is 'mistral'"):
        gguf_arch.family_of(MistralConfig())
    scaled = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                         vocab_size=len(tok), rope_scaling={"rope_type": "linear", "factor": 2.0})
    with pytest.raises(ConvertError, match="rope scaling 'linear'"):
        gguf_arch.check_supported(scaled)
    folder = build("llama", tmp_path / "m", tok=tok, width=64, ffn=128)
    model = AutoModelForCausalLM.from_pretrained(folder)
    with pytest.raises(ConvertError, match="not one of"):
        gguf_write.write(model, load_tokenizer(folder), tmp_path / "m.gguf", "q7_x")


def test_llama3_rope_factors_match_transformers():
    """The divisors written to rope_freqs turn plain rotary frequencies into transformers' llama3 ones."""
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    config = LlamaConfig(hidden_size=256, intermediate_size=512, num_hidden_layers=1, num_attention_heads=4,
                         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    inv_freq, _ = ROPE_INIT_FUNCTIONS["llama3"](config, "cpu")
    plain = 1.0 / (10000.0 ** (np.arange(0, 64, 2) / 64))
    factors = gguf_arch.llama3_rope_factors(config)
    assert factors.min() == 1.0 and factors.max() == pytest.approx(8.0)  # short waves kept, long ones / 8
    np.testing.assert_allclose(plain / factors, inv_freq.numpy(), rtol=1e-6)
