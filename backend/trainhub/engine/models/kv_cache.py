"""A static key/value cache for sampling from trainhub's own decoder (engine/rl/rollout.py drives it).

Generating token t from scratch would recompute the keys and values of every earlier token in every
layer; a cache keeps them. This one is *static*: every buffer is allocated once at its final size,
[B, slots, kv_heads, head_dim] per layer with slots = prompt width + max_new_tokens, and each forward
writes its tokens into the slots `slots` names (index_copy_, no reallocation, no torch.cat). A decode
step therefore has the same shapes and the same buffer addresses every time: torch.compile traces it
once and a CUDA graph can replay it (a growing cache changes shape every token).

Layout of a batch: prompts are padded on the LEFT to one width P, so every row's next token goes to
the same slot P + i and one slot index serves the whole batch. Pad slots never become keys: `valid`
[B, slots] is False on them (and on slots not written yet), and the forward's `mask` [B, 1, T, slots]
is valid & causal. A pad query still sees its own slot, so no attention row is all-masked (SDPA would
give NaN, and a NaN value times a zero weight is still NaN in the next layer's keys). Rotary positions
come from the caller: slot - pad count, so a left-padded row is turned exactly as it would be unpadded.

The model reads `mask` and calls `update(layer, k, v)` (transformer.py); the sampler sets `slots` and
`mask` before each forward (`prepare`).
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, layers: int, batch: int, slots: int, kv_heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device):
        shape = (batch, slots, kv_heads, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.valid = torch.zeros(batch, slots, dtype=torch.bool, device=device)
        """Which slots hold a real token's keys (not a left pad, already written)."""
        self.slots = torch.zeros(1, dtype=torch.long, device=device)
        self.mask = torch.zeros(batch, 1, 1, slots, dtype=torch.bool, device=device)
        self._arange = torch.arange(slots, device=device)
        if device.type == "cuda":  # the addresses never change: compiled graphs and CUDA graphs may rely on them
            for t in (*self.k, *self.v, self.valid):
                torch._dynamo.mark_static_address(t)

    @classmethod
    def for_model(cls, args, batch: int, slots: int, dtype: torch.dtype, device: torch.device) -> KVCache:
        """A cache shaped for a model's ModelArgs."""
        return cls(args.num_hidden_layers, batch, slots, args.num_key_value_heads, args.head_dim, dtype, device)

    @property
    def size(self) -> int:
        return self.valid.shape[1]

    def prepare(self, slots: torch.Tensor, real: torch.Tensor) -> None:
        """The next forward writes its T tokens into `slots` [T] (long); `real` [B, T] bool says which of
        them are real tokens (False: left padding). Sets the mask that forward attends with."""
        self.slots = slots
        self.valid[:, slots] = real
        causal = self._arange[None, :] <= slots[:, None]  # [T, slots]
        own = self._arange[None, :] == slots[:, None]
        self.mask = ((self.valid[:, None, :] & causal[None]) | own[None])[:, None]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this forward's k and v [B, T, kv_heads, d] into the layer's slots; return all slots."""
        self.k[layer].index_copy_(1, self.slots, k.to(self.k[layer].dtype))
        self.v[layer].index_copy_(1, self.slots, v.to(self.v[layer].dtype))
        return self.k[layer], self.v[layer]
