"""trainhub's own decoder: Llama, Qwen2 and Qwen3 as one block parameterised by ModelArgs.

Each of num_hidden_layers blocks is

    h = h + o_proj(attention(rope(q_norm(q_proj(n))), rope(k_norm(k_proj(n))), v_proj(n)))   n = input_layernorm(h)
    h = h + down_proj(silu(gate_proj(n)) * up_proj(n))                                       n = post_attention_layernorm(h)

with RMSNorm (x / sqrt(mean(x^2) + eps) * weight, computed in float32), RoPE (rope.py),
grouped-query causal attention that keeps packed documents apart (attention.py) and the SwiGLU MLP.
q_norm/k_norm (an RMSNorm over each head's head_dim) exist only where args.qk_norm (Qwen3).

The norms, RoPE and the MLP's silu(gate) * up go through `self.ops` (engine/kernels: the eager
references by default, Triton or Liger kernels when the job's backend.kernels chooses them;
kernels.use_kernels sets it on every module that has the slot).

`forward` returns the final-normed hidden states [B, T, H], not logits: the loss (engine/loss.py)
multiplies by `head_weight` itself, chunk by chunk if it wants, so the [B*T, vocab] logits need
never exist whole.

Module and parameter names are transformers' (model.embed_tokens, model.layers.N.self_attn.q_proj,
model.norm, lm_head, ...), so peft's LoRA targets, adapter files and HF checkpoints mean the same
on both models (hf_names.py lists them). A tied head is one Parameter reachable as both
model.embed_tokens.weight and lm_head.weight, as in transformers.

Nothing here subclasses a transformers class; `save_pretrained` writes an HF folder (hf_io.py).
"""

from __future__ import annotations

import torch
from torch import nn

from trainhub.engine.kernels import EAGER, Ops, compute_dtype
from trainhub.engine.models.args import ModelArgs
from trainhub.engine.models.attention import Documents, attend, documents
from trainhub.engine.models.checkpointing import check_mode, offload, run_block
from trainhub.engine.models.kv_cache import KVCache
from trainhub.engine.models.rope import rope_cos_sin, rope_frequencies


class RMSNorm(nn.Module):
    ops: Ops = EAGER

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ops.rms_norm(x, self.weight, self.eps)  # float32 statistics (kernels/reference.py)


class Attention(nn.Module):
    ops: Ops = EAGER

    def __init__(self, args: ModelArgs, layer: int = 0):
        super().__init__()
        d, heads, kv = args.head_dim, args.num_attention_heads, args.num_key_value_heads
        self.head_dim, self.scale, self.layer = d, d ** -0.5, layer
        self.q_proj = nn.Linear(args.hidden_size, heads * d, bias=args.qkv_bias)
        self.k_proj = nn.Linear(args.hidden_size, kv * d, bias=args.qkv_bias)
        self.v_proj = nn.Linear(args.hidden_size, kv * d, bias=args.qkv_bias)
        self.o_proj = nn.Linear(heads * d, args.hidden_size, bias=args.o_bias)
        if args.qk_norm:
            self.q_norm = RMSNorm(d, args.rms_norm_eps)
            self.k_norm = RMSNorm(d, args.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, docs: Documents) -> torch.Tensor:
        b, t, _ = x.shape
        q = self.q_proj(x).view(b, t, -1, self.head_dim)
        k = self.k_proj(x).view(b, t, -1, self.head_dim)
        v = self.v_proj(x).view(b, t, -1, self.head_dim)
        if hasattr(self, "q_norm"):  # Qwen3: per-head RMSNorm before rotation keeps q.k bounded
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = self.ops.rope(q, k, cos, sin)
        if docs.cache is not None:  # sampling: keys and values of every slot so far (kv_cache.py)
            k, v = docs.cache.update(self.layer, k, v)
        return self.o_proj(attend(q, k, v, docs, self.scale, self.ops.sdpa).reshape(b, t, -1))


class MLP(nn.Module):
    ops: Ops = EAGER

    def __init__(self, args: ModelArgs):
        super().__init__()
        h, i, bias = args.hidden_size, args.intermediate_size, args.mlp_bias
        self.gate_proj = nn.Linear(h, i, bias=bias)
        self.up_proj = nn.Linear(h, i, bias=bias)
        self.down_proj = nn.Linear(i, h, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """down(silu(gate) * up). In training with the kernels, the down projection makes the product itself and
        remakes it in its backward rather than keeping it (kernels/swiglu.py): a fused LoRA layer
        (own.fuse_lora) through its forward_swiglu, a plain Linear through ops.swiglu_linear."""
        gate, up, down = self.gate_proj(x), self.up_proj(x), self.down_proj
        takes = getattr(down, "forward_swiglu", None)
        y = takes(gate, up) if takes is not None else None
        if y is None and self.training and self.ops.swiglu_linear is not None and type(down) is nn.Linear:
            y = self.ops.swiglu_linear(gate, up, down.weight, down.bias)
        return y if y is not None else down(self.ops.swiglu(gate, up))


class Block(nn.Module):
    def __init__(self, args: ModelArgs, layer: int = 0):
        super().__init__()
        self.self_attn = Attention(args, layer)
        self.mlp = MLP(args)
        self.input_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.checkpointing = "none"
        """none | full | selective (checkpointing.py). Applied inside forward, so a compiled block
        (compile_blocks) compiles its own checkpoint, as selective checkpointing needs."""

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, docs: Documents) -> torch.Tensor:
        return run_block(self._forward, self.checkpointing, h, cos, sin, docs)

    def _forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, docs: Documents) -> torch.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, docs)
        return h + self.mlp(self.post_attention_layernorm(h))


class Decoder(nn.Module):
    """transformers' `model.model`: embedding, blocks, final norm."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.embed_tokens = nn.Embedding(args.vocab_size, args.hidden_size, padding_idx=args.pad_token_id)
        self.layers = nn.ModuleList(Block(args, i) for i in range(args.num_hidden_layers))
        self.norm = RMSNorm(args.hidden_size, args.rms_norm_eps)


class CausalLM(nn.Module):
    """The whole model; `forward` gives hidden states, `head_weight` the output projection."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.config = args  # the name peft and count_model look for (args.py says why)
        self.model = Decoder(args)
        self.lm_head = nn.Linear(args.hidden_size, args.vocab_size, bias=False)
        self.tie_weights()
        self.register_buffer("rope_freq", rope_frequencies(args), persistent=False)
        self.activation_offload = False
        """Keep the tensors saved for the backward in host memory (checkpointing.py; the engine sets it on
        GPUs only)."""

    @property
    def grad_checkpointing(self) -> str:
        """none | full | selective: what each block recomputes in the backward pass (checkpointing.py).
        Setting True or False means full or none."""
        return self.model.layers[0].checkpointing if len(self.model.layers) else "none"

    @grad_checkpointing.setter
    def grad_checkpointing(self, mode: str | bool) -> None:
        mode = check_mode(mode)
        for block in self.model.layers:
            block.checkpointing = mode

    @property
    def head_weight(self) -> torch.Tensor:
        """[vocab, hidden]: logits = hidden @ head_weight.T (the embedding itself when tied)."""
        return self.lm_head.weight

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, *, cu_seq_lens_q: torch.Tensor | None = None,
                cu_seq_lens_k: torch.Tensor | None = None, max_length_q: int | None = None,
                max_length_k: int | None = None, kv_cache: KVCache | None = None) -> torch.Tensor:
        """Final-normed hidden states [B, T, hidden] for token ids [B, T] (packed forms: attention.py).
        With `kv_cache` (sampling, engine/rl/rollout.py) the tokens fill the cache's current slots and
        attend over every slot under its mask; give position_ids [B, T] then."""
        t = input_ids.shape[1]
        if position_ids is None:
            position_ids = torch.arange(t, device=input_ids.device)[None]
        h = self.model.embed_tokens(input_ids)
        device = h.device
        dtype = compute_dtype(h)
        if kv_cache is not None:
            docs = Documents(mask=kv_cache.mask, cache=kv_cache)
        else:
            docs = documents(t, device, dtype, attention_mask=attention_mask, cu_seq_lens_q=cu_seq_lens_q,
                             cu_seq_lens_k=cu_seq_lens_k, max_length_q=max_length_q, max_length_k=max_length_k)
        cos, sin = rope_cos_sin(self.rope_freq, position_ids, dtype)
        with offload(self.activation_offload and torch.is_grad_enabled(), device):
            for block in self.model.layers:
                h = block(h, cos, sin, docs)
        return self.model.norm(h)

    def tie_weights(self) -> None:
        """Make lm_head.weight the embedding's Parameter when tied (again after to_empty or an assigning load,
        which replace each name's Parameter on its own)."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def reset_buffers(self) -> None:
        """Recompute the RoPE frequencies (after building on the meta device, or moving to one)."""
        self.rope_freq = rope_frequencies(self.config, device=self.lm_head.weight.device)

    def save_pretrained(self, folder, safe_serialization: bool = True, **_) -> None:
        """An HF folder (config.json + model.safetensors) that AutoModelForCausalLM loads; the name and
        signature transformers and peft use, so checkpoint and merge code treat both models alike."""
        from trainhub.engine.models.hf_io import save_hf

        save_hf(self, folder)


@torch.no_grad()
def init_weights(model: CausalLM, seed: int) -> None:
    """transformers' initialisation for these configs: every Linear and the embedding N(0, initializer_range),
    biases 0, norm weights 1, the pad row 0. Drawn from a generator seeded here, in module order, so a run
    is reproducible whatever the global RNG did before."""
    std = model.config.initializer_range
    gen = torch.Generator(device=model.lm_head.weight.device).manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            module.weight.normal_(0.0, std, generator=gen)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.zero_()
        if isinstance(module, RMSNorm):
            module.weight.fill_(1.0)
    pad = model.config.pad_token_id
    if pad is not None:
        model.model.embed_tokens.weight[pad].zero_()
