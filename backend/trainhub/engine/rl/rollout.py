"""Sampling completions from the policy being trained, on its own weights (no copy, no second engine).

    sampler = Sampler(model, SamplingSpec(max_new_tokens=256, temperature=1.0, top_p=1.0), eos_ids=[eos],
                      pad_id=pad, device=device, precision=precision, compiled=False)
    out = sampler.sample(prompt_ids, generator=g)      # prompt_ids: list of token-id lists, one per row

How. Rows are laid out for a static KV cache (engine/models/kv_cache.py): prompts left-padded to one
width P, then one *prefill* forward over [B, P] writes every prompt's keys and values and gives the
first token; then max_new_tokens - 1 *decode* steps of one token each. A decode step has fixed shapes
(tokens [B, 1], one slot index as a tensor, noise [B, vocab]) and touches only preallocated buffers,
so `compiled=True` wraps it in torch.compile once (on CUDA with mode "reduce-overhead", which replays
it as a CUDA graph: one launch per token instead of one per kernel, the cost that dominates small-batch
decoding). The cache is kept from one rollout to the next (same buffers, sized for the longest
prompt the job allows), so the compiled step is traced once per run. The loop stops early once every row has emitted an EOS token, checked every `SYNC_EVERY`
steps (each check waits for the GPU).

Sampling. logits / temperature, then top-k and top-p (nucleus) filtering, then a draw by the exponential
race: argmax(p_i / E_i) with E_i ~ Exp(1) picks i with probability p_i (the same law as multinomial).
The noise is drawn outside the step from the caller's torch.Generator, so a fixed seed reproduces a
rollout and a compiled step has no random state of its own. `greedy=True` takes the argmax instead.

Log-probabilities. For each sampled token, log_softmax(logits / temperature) at that token, before
top-k/top-p filtering: the quantity the training forward computes for the importance ratio (TRL does
the same), so with one update per rollout the ratio starts at 1 up to numerics.

LoRA (peft) runs through the same forward: the adapters sit inside the model's Linear layers. Only
trainhub's own decoder has the cache; the transformers path is refused by the runner.

Ops. The sampler runs the model's norms, RoPE and MLP through the reference ops (engine/kernels/reference.py)
whatever backend.kernels chose for the update: the fused kernels' gain is the update's saved activations,
which sampling (no gradients) has none of, and the compiled decode step fuses those element-wise ops itself
(inductor), inside one CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from trainhub.engine.device import Precision, autocast
from trainhub.engine.kernels import EAGER, ops_as
from trainhub.engine.models.kv_cache import KVCache
from trainhub.engine.models.own import unwrap
from trainhub.engine.models.transformer import CausalLM

SYNC_EVERY = 16
"""Decode steps between checks that every row has finished (a host sync each; 1/16 of the steps)."""
WIDTH_MULTIPLE = 16
"""Prompt widths are padded up to a multiple of this, so a compiled prefill sees few distinct shapes."""


@dataclass(frozen=True)
class SamplingSpec:
    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    """0: no top-k filtering."""
    greedy: bool = False


@dataclass
class Rollout:
    """What the sampler returns for B rows; completion tensors are [B, max_new_tokens] on the device."""

    prompt_ids: torch.Tensor
    """[B, P] left-padded prompts."""
    prompt_mask: torch.Tensor
    """[B, P] 1 on real prompt tokens."""
    completion_ids: torch.Tensor
    """Sampled tokens; pad after a row's EOS."""
    completion_mask: torch.Tensor
    """1 on the tokens up to and including the first EOS."""
    logprobs: torch.Tensor
    """log pi(token) at the sampling temperature (0 where the mask is 0)."""
    truncated: torch.Tensor
    """[B] bool: no EOS within max_new_tokens."""

    @property
    def lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(-1)

    def rows(self, index: torch.Tensor | slice) -> Rollout:
        """These rows only (a bool mask, indices or a slice)."""
        return Rollout(*(getattr(self, f.name)[index] for f in fields(self)))

    @staticmethod
    def cat(parts: list[Rollout], pad_id: int) -> Rollout:
        """Rows of several rollouts as one; prompts left-padded again to the widest."""
        width = max(p.prompt_ids.shape[1] for p in parts)

        def widen(x: torch.Tensor, value: int) -> torch.Tensor:
            return torch.nn.functional.pad(x, (width - x.shape[1], 0), value=value)

        return Rollout(prompt_ids=torch.cat([widen(p.prompt_ids, pad_id) for p in parts]),
                       prompt_mask=torch.cat([widen(p.prompt_mask, 0) for p in parts]),
                       **{name: torch.cat([getattr(p, name) for p in parts])
                          for name in ("completion_ids", "completion_mask", "logprobs", "truncated")})


def left_pad(prompts: list[list[int]], pad_id: int, multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id lists -> ([B, P] ids, [B, P] mask), padded on the left to P, a multiple of `multiple`."""
    width = max(len(p) for p in prompts)
    width = -(-width // multiple) * multiple
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        if p:
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
    return ids, mask


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """[B, V] float logits with every token outside the top-k and outside the top-p nucleus set to -inf.
    The nucleus is the smallest set of most likely tokens whose probability reaches top_p (the most
    likely token always stays)."""
    if top_k and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        before = probs.cumsum(-1) - probs  # probability of the tokens ranked above each
        drop_sorted = before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def pick(logits: torch.Tensor, noise: torch.Tensor | None, spec: SamplingSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(token [B], its log-probability [B]) from last-position logits [B, V] (float32)."""
    scaled = logits / spec.temperature
    logp_all = scaled.log_softmax(-1)
    if spec.greedy:
        token = logits.argmax(-1)
    else:
        probs = filter_logits(scaled, spec.top_k, spec.top_p).softmax(-1)
        token = (probs / noise).argmax(-1)  # exponential race: P(i) = p_i (module docstring)
    return token, logp_all.gather(-1, token[:, None]).squeeze(-1)


class Sampler:
    def __init__(self, model: torch.nn.Module, spec: SamplingSpec, *, eos_ids: list[int], pad_id: int,
                 device: torch.device, precision: Precision, compiled: bool = False, prompt_tokens: int = 0):
        base = unwrap(model)
        if not isinstance(base, CausalLM):
            raise ValueError("the native sampler runs trainhub's own decoder (llama, qwen2, qwen3), not a "
                             "transformers model; use model.impl own or auto with such a checkpoint")
        if not eos_ids:
            raise ValueError("the sampler needs an EOS token id to stop at (the tokenizer has none)")
        self.model, self.spec, self.device, self.precision = base, spec, device, precision
        self.eos = torch.tensor(sorted(set(eos_ids)), device=device)
        self.pad_id = pad_id
        self.head = base.head_weight
        self.prompt_tokens = prompt_tokens
        self.compiled = compiled and device.type == "cuda"
        self._cache: KVCache | None = None
        self._decode = self._decode_step
        if compiled:
            mode = "reduce-overhead" if device.type == "cuda" else None  # CUDA graphs on a GPU
            self._decode = torch.compile(self._decode_step, mode=mode, fullgraph=True, dynamic=False)

    def _cache_for(self, batch: int, slots: int) -> KVCache:
        """The sampler's one cache, reused from call to call (cleared), so a compiled decode step sees the
        same buffers and shapes every rollout; sized for prompt_tokens (rounded up) + max_new_tokens, and
        grown only when a batch needs more."""
        cache = self._cache
        if cache is None or cache.valid.shape[0] != batch or cache.size < slots:
            width = -(-self.prompt_tokens // WIDTH_MULTIPLE) * WIDTH_MULTIPLE
            size = max(slots, width + self.spec.max_new_tokens)
            cache = self._cache = KVCache.for_model(self.model.config, batch, size, self._cache_dtype(), self.device)
        cache.valid.zero_()
        return cache

    def _cache_dtype(self) -> torch.dtype:
        return self.precision.autocast_dtype or self.head.dtype

    def _logits(self, hidden_last: torch.Tensor) -> torch.Tensor:
        return (hidden_last @ self.head.T.to(hidden_last.dtype)).float()

    def _decode_step(self, cache: KVCache, token: torch.Tensor, slot: torch.Tensor, start: torch.Tensor,
                     done: torch.Tensor, noise: torch.Tensor):
        """One token for every row: fixed shapes, buffers written in place (module docstring)."""
        cache.prepare(slot, torch.ones_like(token, dtype=torch.bool))
        with autocast(self.device, self.precision):
            hidden = self.model(token, position_ids=slot[None, :] - start[:, None], kv_cache=cache)
        nxt, logp = pick(self._logits(hidden[:, -1]), noise, self.spec)
        nxt = torch.where(done, self.pad_id, nxt)
        logp = torch.where(done, 0.0, logp)
        return nxt, logp, done | torch.isin(nxt, self.eos)

    @torch.no_grad()
    def sample(self, prompts: list[list[int]], generator: torch.Generator | None = None) -> Rollout:
        with ops_as(self.model, EAGER):  # module docstring, "Ops"
            return self._sample(prompts, generator)

    def _sample(self, prompts: list[list[int]], generator: torch.Generator | None) -> Rollout:
        spec, device = self.spec, self.device
        was_training = self.model.training
        self.model.eval()
        ids, mask = left_pad(prompts, self.pad_id, WIDTH_MULTIPLE)
        ids, mask = ids.to(device), mask.to(device)
        b, width = ids.shape
        n = spec.max_new_tokens
        cache = self._cache_for(b, width + n)
        start = (width - mask.sum(-1)).long()  # pad count: a row's first real slot
        vocab = self.head.shape[0]

        def noise() -> torch.Tensor | None:
            if spec.greedy:
                return None
            return torch.empty(b, vocab, device=device).exponential_(generator=generator)

        # prefill: every prompt slot at once
        slots = torch.arange(width, device=device)
        cache.prepare(slots, mask.bool())
        with autocast(device, self.precision):
            positions = (slots[None, :] - start[:, None]).clamp(min=0)
            hidden = self.model(ids, position_ids=positions, kv_cache=cache)
        token, logp = pick(self._logits(hidden[:, -1]), noise(), spec)
        tokens = torch.full((b, n), self.pad_id, dtype=torch.long, device=device)
        logps = torch.zeros((b, n), dtype=torch.float32, device=device)
        tokens[:, 0], logps[:, 0] = token, logp
        done = torch.isin(token, self.eos)
        # decode: one slot per step
        for i in range(1, n):
            if i % SYNC_EVERY == 0 and bool(done.all()):  # sync
                break
            slot = torch.full((1,), width + i - 1, dtype=torch.long, device=device)
            if self.compiled:  # a new CUDA-graph replay: the previous one's outputs are copied out below
                torch.compiler.cudagraph_mark_step_begin()
            token, logp, done = self._decode(cache, tokens[:, i - 1:i].clone(), slot, start, done,
                                             noise() if not spec.greedy else torch.ones(b, vocab, device=device))
            tokens[:, i], logps[:, i], done = token, logp, done.clone()
        is_eos = torch.isin(tokens, self.eos)
        after = (is_eos.cumsum(-1) - is_eos.long()) > 0  # strictly after the first EOS
        completion_mask = (~after).long()
        self.model.train(was_training)
        return Rollout(prompt_ids=ids, prompt_mask=mask, completion_ids=tokens, completion_mask=completion_mask,
                       logprobs=logps * completion_mask, truncated=~is_eos.any(-1))
