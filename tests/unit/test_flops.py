"""FLOPs per token, MFU and peak lookup against hand-computed values; `count_model` against hand counts."""

from __future__ import annotations

import pytest
import torch

from trainhub.engine.model import count_model
from trainhub.metrics.flops import flops_per_token, mfu, peak_flops

# ----------------------------------------------------------------------------- Llama-3.2-1B by hand

# Shape of Llama-3.2-1B: d=2048, MLP 8192, 16 layers, 32 heads of 64, 8 KV heads, vocab 128256, tied.
D, FF, L, H, KV, V = 2048, 8192, 16, 32, 8, 128256
Q = D // H  # 64
T = 2048
PER_LAYER = (
    D * H * Q        # q_proj  2048 x 2048 = 4,194,304
    + 2 * D * KV * Q  # k_proj, v_proj  2 x 2048 x 512 = 2,097,152
    + H * Q * D      # o_proj  4,194,304
    + 3 * D * FF     # gate, up, down  50,331,648
    + 2 * D          # two RMSNorms  4,096
)
N_1B = L * PER_LAYER + V * D + D  # + tied embedding (counted once, through the head) + final norm
ATTENTION_1B = 12 * L * H * Q * T  # 805,306,368


def test_llama_1b_parameter_count_by_hand():
    assert PER_LAYER == 60_821_504
    assert N_1B == 1_235_814_400


def test_llama_1b_flops_per_token():
    got = flops_per_token(n_frozen=0, n_trainable=N_1B, layers=L, heads=H, head_dim=Q, seq_len=T)
    assert got == 6 * N_1B + 12 * 16 * 32 * 64 * 2048
    assert got == 8_220_192_768
    assert got == pytest.approx(8.22e9, rel=1e-3)


def test_lora_flops_per_token_formula():
    # 4 per frozen weight (forward + input gradient), 6 per trained weight, plus attention.
    got = flops_per_token(n_frozen=1000, n_trainable=10, layers=2, heads=4, head_dim=8, seq_len=16)
    assert got == 4 * 1000 + 6 * 10 + 12 * 2 * 4 * 8 * 16 == 16_348


def _lora_1b_trainable(r: int) -> int:
    """LoRA A (r x in) and B (out x r) on every linear layer of every block, by hand."""
    def ab(fan_in, fan_out):
        return r * fan_in + fan_out * r
    per_layer = ab(D, H * Q) + 2 * ab(D, KV * Q) + ab(H * Q, D) + 2 * ab(D, FF) + ab(FF, D)
    return L * per_layer


def test_llama_1b_lora_flops_per_token():
    trainable = _lora_1b_trainable(16)
    assert trainable == 11_272_192
    got = flops_per_token(n_frozen=N_1B, n_trainable=trainable, layers=L, heads=H, head_dim=Q, seq_len=T)
    assert got == 4 * N_1B + 6 * trainable + ATTENTION_1B == 5_816_197_120


def _llama_1b_on_meta():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=V, hidden_size=D, intermediate_size=FF, num_hidden_layers=L,
                         num_attention_heads=H, num_key_value_heads=KV, tie_word_embeddings=True)
    with torch.device("meta"):  # shapes only: no memory, no init time
        return LlamaForCausalLM(config)


def test_count_model_on_llama_1b_shape():
    count = count_model(_llama_1b_on_meta())
    assert (count.params_total, count.params_trainable) == (N_1B, N_1B)
    assert (count.matmul_frozen, count.matmul_trainable) == (0, N_1B)
    assert (count.layers, count.heads, count.head_dim) == (L, H, Q)
    assert count.flops_per_token(T) == 8_220_192_768


def test_count_model_on_llama_1b_shape_with_lora():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_llama_1b_on_meta(), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                           task_type="CAUSAL_LM"))
    count = count_model(model)
    assert count.params_trainable == count.matmul_trainable == 11_272_192
    assert count.matmul_frozen == N_1B
    assert count.flops_per_token(T) == 5_816_197_120


# ----------------------------------------------------------------------------- MFU and peaks


def test_mfu_arithmetic():
    # 1e9 FLOPs/token x 100 tokens/s = 1e11 FLOP/s, over 2 devices of 1e12: 5 %.
    assert mfu(1e9, 100.0, 1e12, devices=2) == 0.05
    assert mfu(8_220_192_768, 40_000.0, 989e12) == pytest.approx(8_220_192_768 * 40_000 / 989e12, rel=1e-15)
    assert mfu(8_220_192_768, 40_000.0, 989e12) == pytest.approx(0.33246, abs=1e-5)


def test_mfu_without_a_peak_is_none():
    assert mfu(1e9, 100.0, None) is None
    assert mfu(1e9, 100.0, 0.0) is None


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA H200 NVL", 836e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA A100 80GB PCIe", 312e12),
    ("NVIDIA A10G", 70e12),
    ("NVIDIA A10", 125e12),
    ("NVIDIA L40S", 362e12),
    ("NVIDIA L40", 181e12),
    ("NVIDIA L4", 121e12),
    ("NVIDIA GeForce RTX 4090", 165e12),
    ("Tesla V100-SXM2-16GB", 125e12),
])
def test_peak_flops_lookup(name, peak):
    assert peak_flops(name) == peak


@pytest.mark.parametrize("name", ["NVIDIA GeForce GTX 1080", "Tesla T4", "x86_64", ""])
def test_peak_flops_unknown_is_none(name):
    assert peak_flops(name) is None


# ----------------------------------------------------------------------------- count_model on a tiny Llama

# d=16, MLP 40, 2 layers, 4 heads of 4, 2 KV heads, vocab 100.
TD, TFF, TL, TH, TKV, TV = 16, 40, 2, 4, 2, 100
TQ = TD // TH
TINY_LAYER = TD * TD + 2 * TD * TKV * TQ + TD * TD + 3 * TD * TFF + 2 * TD  # 256+256+256+1920+32 = 2720
TINY_BODY = TL * TINY_LAYER + TD  # blocks + final norm = 5456
TINY_EMBED = TV * TD  # 1600


def _tiny_llama(tied: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=TV, hidden_size=TD, intermediate_size=TFF, num_hidden_layers=TL,
                         num_attention_heads=TH, num_key_value_heads=TKV, max_position_embeddings=32,
                         tie_word_embeddings=tied)
    return LlamaForCausalLM(config)


def test_tiny_hand_count():
    assert TINY_LAYER == 2720
    assert TINY_BODY == 5456


def test_count_model_tied():
    count = count_model(_tiny_llama(tied=True))
    assert count.params_total == count.params_trainable == TINY_BODY + TINY_EMBED == 7056
    # The shared embedding is the output head's matmul: counted once.
    assert (count.matmul_frozen, count.matmul_trainable) == (0, 7056)
    assert (count.layers, count.heads, count.head_dim) == (2, 4, 4)
    assert count.flops_per_token(32) == 6 * 7056 + 12 * 2 * 4 * 4 * 32


def test_count_model_untied():
    count = count_model(_tiny_llama(tied=False))
    assert count.params_total == count.params_trainable == TINY_BODY + 2 * TINY_EMBED == 8656
    # The input embedding is a lookup; the head (100 x 16) is a matmul.
    assert (count.matmul_frozen, count.matmul_trainable) == (0, 7056)


def _tiny_lora_trainable(r: int) -> int:
    def ab(fan_in, fan_out):
        return r * fan_in + fan_out * r
    per_layer = ab(TD, TD) + 2 * ab(TD, TKV * TQ) + ab(TD, TD) + 2 * ab(TD, TFF) + ab(TFF, TD)
    return TL * per_layer  # (128 + 2*96 + 128 + 2*224 + 224) * 2 = 2240 for r=4


@pytest.mark.parametrize(("tied", "total_base"), [(True, 7056), (False, 8656)])
def test_count_model_lora(tied, total_base):
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_tiny_llama(tied), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                         task_type="CAUSAL_LM"))
    lora = _tiny_lora_trainable(4)
    assert lora == 2240
    count = count_model(model)
    assert count.params_total == total_base + lora
    assert count.params_trainable == count.matmul_trainable == lora
    assert count.matmul_frozen == 7056
    assert count.flops_per_token(32) == 4 * 7056 + 6 * 2240 + 12 * 2 * 4 * 4 * 32


def test_count_model_lora_on_two_targets():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_tiny_llama(True), LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"],
                                                         task_type="CAUSAL_LM"))
    count = count_model(model)
    # q: 2*16 + 16*2 = 64; v: 2*16 + 8*2 = 48; per layer 112, two layers.
    assert count.params_trainable == count.matmul_trainable == 224
    assert count.matmul_frozen == 7056
