"""Causal attention that keeps packed documents apart, in each form data/packing.py hands us.

Which keys a query may see is decided once per forward (`documents`) and shared by every layer:

- nothing, or a 2-D padding mask [B, T]: plain causal attention (SDPA's is_causal, so CUDA takes its
  flash kernel). data/batches.py pads on the RIGHT, and under causality no real token ever sees a
  pad to its right, so the real positions are exact; a pad position sees the real tokens and the
  pads before it (transformers would hide the pads from it; its label is -100 either way, so loss
  and gradients are the same). A left-padded batch would be wrong here: nothing makes one today.
- a 4-D block-diagonal mask [B, 1, T, T], bool (True = attend) or additive float (0 / very
  negative): passed to SDPA as given. A float mask is cast to the query dtype (SDPA wants them equal).
- "varlen": the rows laid end to end as one row [1, N] with cu_seq_lens (int32, document starts and
  N at the end) and max_length. On CUDA in bf16/fp16, flash attention's varlen kernel runs each
  document as its own causal sequence: no N x N mask exists at all. Kernels, in order: the
  flash_attn package's flash_attn_varlen_func, else torch's own torch.nn.attention.varlen.varlen_attn.
  Elsewhere (CPU, float32, neither kernel): the same block-diagonal bool mask is built from
  cu_seq_lens (document id = searchsorted of the position in the starts; no host sync) and SDPA runs
  it, so CPU tests check the varlen batches against the other forms.

Grouped-query attention: k and v keep their num_key_value_heads heads; SDPA's enable_gqa and flash's
native GQA share each among num_heads / num_kv_heads query heads without copying them. Except under a mask
while gradients are recorded: SDPA's fused kernels that take a mask (memory-efficient, cuDNN) do not take
enable_gqa, so that pair falls back to the math kernel, which materialises the [B, heads, T, T] scores in
float32 and keeps the probabilities for the backward, in every layer (a GRPO update's left-padded
micro-batch of 16 x 290 tokens on a Qwen2.5-0.5B shape: ~75 MB a layer, ~1.8 GB over 24). There k and v are
repeated to every query head first (~17 MB a layer there) and the memory-efficient kernel runs. Without
gradients (sampling, evaluation) nothing is kept, and a decode step's scores are one query row, so GQA stays
uncopied.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Documents:
    """How attention keeps tokens apart in this forward: a mask for SDPA (None: causal), or varlen."""

    mask: torch.Tensor | None = None
    cu_seq_lens: torch.Tensor | None = None
    max_length: int | None = None
    cache: object | None = None
    """A KVCache (kv_cache.py) while sampling: each layer writes its new keys and values into the cache's
    static buffers and attends over all their slots under `mask` [B, 1, T, slots]."""


def documents(tokens: int, device: torch.device, compute_dtype: torch.dtype, *, attention_mask=None,
              cu_seq_lens_q=None, cu_seq_lens_k=None, max_length_q=None, max_length_k=None) -> Documents:
    """The attention plan for a batch of `tokens` positions per row (module docstring)."""
    if cu_seq_lens_q is not None or cu_seq_lens_k is not None:
        if cu_seq_lens_q is None or cu_seq_lens_k is None or max_length_q is None or max_length_k is None:
            raise ValueError("varlen attention needs cu_seq_lens_q, cu_seq_lens_k, max_length_q and max_length_k")
        if cu_seq_lens_q is not cu_seq_lens_k and cu_seq_lens_q.shape != cu_seq_lens_k.shape:
            raise ValueError("self-attention: cu_seq_lens_q and cu_seq_lens_k must describe the same documents")
        if attention_mask is not None:
            raise ValueError("give either an attention_mask or varlen cu_seq_lens, not both")
        cu = cu_seq_lens_q.to(device=device, dtype=torch.int32)
        if varlen_runs(device, compute_dtype):
            return Documents(cu_seq_lens=cu, max_length=int(max_length_q))
        return Documents(mask=_block_diagonal(cu, tokens))
    if attention_mask is None or attention_mask.dim() == 2:
        return Documents()
    if attention_mask.dim() != 4:
        raise ValueError(f"attention_mask must be 2-D [B, T] or 4-D [B, 1, T, T], not {attention_mask.dim()}-D")
    return Documents(mask=attention_mask)


def varlen_runs(device: torch.device, compute_dtype: torch.dtype | None) -> bool:
    """Whether varlen batches run a varlen kernel here (CUDA, bf16/fp16, a kernel that imports); elsewhere
    `documents` turns them into a block-diagonal mask, exact but with a [N, N] mask and N x N scores."""
    return device.type == "cuda" and compute_dtype in (torch.bfloat16, torch.float16) and _varlen_kernel() is not None


def _block_diagonal(cu: torch.Tensor, tokens: int) -> torch.Tensor:
    """[1, 1, N, N] bool: query q sees key k iff both lie in the same document and k <= q."""
    position = torch.arange(tokens, device=cu.device)
    doc = torch.searchsorted(cu[1:].long(), position, right=True)
    same = doc[:, None] == doc[None, :]
    return (same & (position[:, None] >= position[None, :]))[None, None]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, docs: Documents, scale: float,
           sdpa: tuple[str, ...] = ()) -> torch.Tensor:
    """q [B, T, H, d], k and v [B, T, Hkv, d] -> [B, T, H, d]. `sdpa`: SDPA's kernels in priority order
    (engine/kernels Ops.sdpa, backend.sdpa); empty: torch's own."""
    if docs.cu_seq_lens is not None:
        b, t = q.shape[:2]
        out = _varlen_kernel()(q.reshape(b * t, *q.shape[2:]), k.reshape(b * t, *k.shape[2:]),
                               v.reshape(b * t, *v.shape[2:]), docs.cu_seq_lens, docs.max_length, scale)
        return out.view(q.shape)
    mask = docs.mask
    if mask is not None and mask.dtype != torch.bool and mask.dtype != q.dtype:
        mask = mask.to(q.dtype)
    if mask is not None and q.shape[2] != k.shape[2] and torch.is_grad_enabled():  # module docstring
        rep = q.shape[2] // k.shape[2]
        k, v = k.repeat_interleave(rep, dim=2), v.repeat_interleave(rep, dim=2)
    with _kernel_order(sdpa):
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                             attn_mask=mask, is_causal=mask is None, scale=scale,
                                             enable_gqa=q.shape[2] != k.shape[2])
    return out.transpose(1, 2)


def _kernel_order(sdpa: tuple[str, ...]):
    """torch's sdpa_kernel with set_priority: the dispatcher tries the named kernels in this order (torch.compile
    traces it as part of the graph)."""
    if not sdpa:
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([getattr(SDPBackend, name) for name in sdpa], set_priority=True)


@cache
def _varlen_kernel():
    """A varlen causal attention function (q, k, v, cu, max_len, scale) -> out, or None where none imports."""
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        pass
    else:
        def flash(q, k, v, cu, longest, scale):
            return flash_attn_varlen_func(q, k, v, cu, cu, longest, longest, softmax_scale=scale, causal=True)
        return flash
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None

    # torch 2.10/2.11 take is_causal and equal head counts; later releases a causal window and enable_gqa
    accepts = inspect.signature(varlen_attn).parameters
    causal = {"window_size": (-1, 0)} if "window_size" in accepts else {"is_causal": True}

    def torch_varlen(q, k, v, cu, longest, scale):
        if q.shape[1] != k.shape[1]:
            if "enable_gqa" in accepts:
                return varlen_attn(q, k, v, cu, cu, longest, longest, scale=scale, enable_gqa=True, **causal)
            k, v = (x.repeat_interleave(q.shape[1] // k.shape[1], dim=1) for x in (k, v))
        return varlen_attn(q, k, v, cu, cu, longest, longest, scale=scale, **causal)
    return torch_varlen
