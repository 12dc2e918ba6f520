"""FLOPs per token and MFU, computed the same way for every backend.

FLOPs per trained token (PaLM appendix B, the formula nanoGPT and torchtitan use):

    full fine-tune / pretrain:  6*N + 12*L*H*Q*T
    LoRA:                       4*N_frozen + 6*N_trainable + 12*L*H*Q*T

N counts the weights that take part in a matmul: every parameter except the
input embedding (a lookup), unless it is tied to the output head, whose matmul
then counts it once. A frozen weight costs the forward (2 FLOPs/param) and the
input gradient (2), not the weight gradient (2): hence 4. The attention term
(L layers, H heads, Q head dim, T sequence length) covers QK^T and AV forward
and backward; causal masking is not discounted and activation-checkpoint
recompute is not counted (that would be HFU, not MFU).

MFU = FLOPs/token x tokens/s / (peak dense bf16 FLOP/s per device x devices).
"""

from __future__ import annotations

# Dense (no 2:4 sparsity) bf16 tensor-core peaks with fp32 accumulate, FLOP/s per device,
# from the vendors' datasheets. Matched against torch.cuda.get_device_name() by substring,
# most specific first.
GPU_PEAK_BF16: list[tuple[str, float]] = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM
    ("H200 NVL", 836e12),
    ("H200", 989e12),
    ("GH200", 989e12),
    ("B200", 2250e12),
    ("B100", 1750e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("V100", 125e12),  # fp16: V100 has no bf16
    ("MI300X", 1307e12),
]


def peak_flops(device_name: str) -> float | None:
    """Peak dense bf16 FLOP/s for a device name, or None where unknown (CPU, unlisted GPU)."""
    for key, value in GPU_PEAK_BF16:
        if key.lower() in device_name.lower():
            return value
    return None


def flops_per_token(*, n_frozen: int, n_trainable: int, layers: int, heads: int, head_dim: int, seq_len: int) -> float:
    """Training FLOPs per token; n_frozen/n_trainable are matmul weights (see module docstring)."""
    return 4.0 * n_frozen + 6.0 * n_trainable + 12.0 * layers * heads * head_dim * seq_len


def mfu(flops_token: float, tokens_per_s: float, peak: float | None, devices: int = 1) -> float | None:
    if not peak:
        return None
    return flops_token * tokens_per_s / (peak * devices)
