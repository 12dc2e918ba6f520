"""FLOPs per token against torch's own count of the matmuls a real model runs; MFU and peak lookup
against hand-computed and datasheet values; `count_model` against hand counts.

The independent measure is torch.utils.flop_counter.FlopCounterMode over one forward + backward:
it counts every mm/bmm the model runs. Two documented differences from trainhub's formula
(trainhub/metrics/flops.py), each added back explicitly:
- the formula's N counts the RMSNorm weights (PaLM's 6N counts every non-embedding weight); a norm is
  no matmul, so the counter sees none of it: 6 FLOPs per trained norm weight, 4 per frozen one;
- the formula assumes every matmul's input gradient is computed; with a frozen embedding (LoRA) autograd
  skips it for the first layer's projections, so the LoRA measurement turns input gradients on.
Attention runs `eager` (two bmm the counter sees); the CPU SDPA kernel is not counted by torch.
"""

from __future__ import annotations

import pytest
import torch

from trainhub.engine.model import count_model
from trainhub.metrics.flops import mfu, peak_flops


def _counted_per_token(model, batch: int, seq_len: int) -> float:
    """Matmul FLOPs of one training forward + backward as torch counts them, per token."""
    from torch.utils.flop_counter import FlopCounterMode

    ids = torch.zeros(batch, seq_len, dtype=torch.long, device=next(model.parameters()).device)
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids, labels=ids).loss.backward()
    return counter.get_total_flops() / (batch * seq_len)


def _norm_weights(model) -> tuple[int, int]:
    """(trained, frozen) RMSNorm weights: in the formula's N, absent from the counter's matmuls."""
    weights = [p for m in model.modules() if type(m).__name__.endswith("RMSNorm") for p in m.parameters()]
    return (sum(p.numel() for p in weights if p.requires_grad), sum(p.numel() for p in weights if not p.requires_grad))


# ----------------------------------------------------------------------------- Llama-3.2-1B by hand

# Shape of Llama-3.2-1B: d=2048, MLP 8192, 16 layers, 32 heads of 64, 8 KV heads, vocab 128256, tied.
D, FF, L, H, KV, V = 2048, 8192, 16, 32, 8, 128256
Q = D // H  # 64
T = 2048
# Per layer: q_proj 2048x2048 = 4,194,304; k_proj, v_proj 2 x 2048x512 = 2,097,152; o_proj 4,194,304;
# gate, up, down 3 x 2048x8192 = 50,331,648; two RMSNorms 4,096: 60,821,504.
# N = 16 x 60,821,504 + tied embedding 128256x2048 = 262,668,288 (counted once, through the head)
#   + final norm 2,048 = 1,235,814,400.
N_1B = 1_235_814_400
# 6N = 7,414,886,400; attention 12 x 16 layers x 32 heads x 64 x 2048 = 805,306,368; sum 8,220,192,768.
FLOPS_1B = 8_220_192_768


def _llama_1b_on_meta(attn: str = "sdpa"):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=V, hidden_size=D, intermediate_size=FF, num_hidden_layers=L,
                         num_attention_heads=H, num_key_value_heads=KV, tie_word_embeddings=True,
                         attn_implementation=attn)
    with torch.device("meta"):  # shapes only: no memory, no init time
        return LlamaForCausalLM(config)


def test_count_model_on_llama_1b_shape():
    count = count_model(_llama_1b_on_meta())
    assert (count.params_total, count.params_trainable) == (N_1B, N_1B)
    assert (count.matmul_frozen, count.matmul_trainable) == (0, N_1B)
    assert (count.layers, count.heads, count.head_dim) == (L, H, Q)
    assert count.flops_per_token(T) == FLOPS_1B


def test_llama_1b_flops_per_token_equal_the_counted_matmuls():
    """Forward + backward of the real 1B shape at T=2048 on the meta device (no memory): the counted
    matmuls plus 6 per norm weight (16 x 2 x 2048 + 2048 = 67,584 -> 405,504) are the formula's FLOPs."""
    model = _llama_1b_on_meta(attn="eager")
    trained_norms, _ = _norm_weights(model)
    assert trained_norms == 67_584
    counted = _counted_per_token(model, batch=1, seq_len=T)
    assert counted == 8_219_787_264
    assert count_model(model).flops_per_token(T) == counted + 6 * trained_norms == FLOPS_1B


def test_count_model_on_llama_1b_shape_with_lora():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_llama_1b_on_meta(), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear",
                                                           task_type="CAUSAL_LM"))
    count = count_model(model)
    # LoRA A (16 x in) and B (out x 16) per linear, per layer: q 16x(2048+2048) = 65,536; k, v 2 x 16x(2048+512)
    # = 81,920; o 65,536; gate, up 2 x 16x(2048+8192) = 327,680; down 163,840; 704,512 x 16 layers = 11,272,192.
    assert count.params_trainable == count.matmul_trainable == 11_272_192
    assert count.matmul_frozen == N_1B
    # 4 x 1,235,814,400 + 6 x 11,272,192 + 805,306,368 = 4,943,257,600 + 67,633,152 + 805,306,368
    assert count.flops_per_token(T) == 5_816_197_120


# ----------------------------------------------------------------------------- MFU and peaks


def test_mfu_arithmetic():
    # 1e9 FLOPs/token x 100 tokens/s = 1e11 FLOP/s, over 2 devices of 1e12: 5 %.
    # 8,220,192,768 x 40,000 = 3.2881e14 FLOP/s over 989e12: 0.33246.
    assert mfu(1e9, 100.0, 1e12, devices=2) == 0.05
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


def _tiny_llama(tied: bool, attn: str = "sdpa"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=TV, hidden_size=TD, intermediate_size=TFF, num_hidden_layers=TL,
                         num_attention_heads=TH, num_key_value_heads=TKV, max_position_embeddings=32,
                         tie_word_embeddings=tied, attn_implementation=attn)
    return LlamaForCausalLM(config)


@pytest.mark.parametrize("tied", [True, False])
def test_flops_per_token_equal_the_counted_matmuls(tied):
    """A full fine-tune: the counter's matmul FLOPs plus 6 per norm weight (2 x 32 + 16 = 80) are the formula's.
    By hand: 6 x (7056 - 80) = 41,856 for the linear layers and head, 12 x 2 x 4 x 4 x 32 = 12,288 for attention."""
    model = _tiny_llama(tied, attn="eager")
    trained_norms, _ = _norm_weights(model)
    assert trained_norms == 80
    counted = _counted_per_token(model, batch=2, seq_len=32)
    assert counted == 41_856 + 12_288
    assert count_model(model).flops_per_token(32) == counted + 6 * trained_norms


@pytest.mark.parametrize("tied", [True, False])
def test_lora_flops_per_token_equal_the_counted_matmuls(tied):
    """LoRA r=4 on every linear layer: frozen weights cost 4 FLOPs (forward, input gradient), trained ones 6.
    The counter sees the frozen norms' 4 x 80 = 320 nowhere; input gradients on, as the formula assumes."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(_tiny_llama(tied, attn="eager"), LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"))
    model.enable_input_require_grads()
    _, frozen_norms = _norm_weights(model)
    assert frozen_norms == 80
    counted = _counted_per_token(model, batch=2, seq_len=32)
    # 4 x (7056 - 80) + 6 x 2240 + 12,288 = 27,904 + 13,440 + 12,288
    assert counted == 53_632
    assert count_model(model).flops_per_token(32) == counted + 4 * frozen_norms


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
