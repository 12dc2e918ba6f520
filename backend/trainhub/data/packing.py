"""Packing: several short examples per row of max_length tokens, each still seeing only itself.

Why. Chat examples vary in length; padding each to the longest of its batch wastes the padded
positions' compute. Packing lays whole examples end to end in rows of max_length tokens, so almost
every position is a real token. It changes nothing the model computes per example if three things
hold, and this module makes them hold:

1. Positions restart at 0 at each document, so rotary embeddings see the same positions as unpacked.
2. Attention stays inside each document: a block-diagonal causal mask (query q sees key k iff both
   are in the same document and k <= q).
3. No document is predicted from the one before it. The model shifts labels by one (position t is
   scored on labels[t+1]), so the first token of each document gets label -100; unpacked, nothing
   predicts an example's first token either. Padding at a row's end is -100.
Then every per-token logit, the summed loss and the gradients equal the unpacked ones (the tests
check this to 1e-5 on Llama and Qwen2).

Which rows. `pack_ffd` is First-Fit-Decreasing bin packing: sort examples longest first, put each in
the first row that still has room, open a new row when none has. FFD uses at most 11/9 of the
optimal number of rows plus 6/9 (Dósa 2007). On the shipped chat data (1,200 conversations, mean
45 tokens, trainhub's BPE) it fills 97.3% of 256-token rows and 98.2% of 512- to 2048-token rows,
where micro-batches of 8 padded to their longest are 54.6% real tokens. A segment tree over the
rows' free space finds "the first row with room" in O(log n), so packing is O(n log n).

What transformers 5.23 accepts (read in masking_utils.py / modeling_llama.py, checked by experiment):
- "sdpa": a 4-D mask [batch, 1, q, k] passed as `attention_mask` is used as given (create_causal_mask
  returns any 4-D mask untouched), bool (True = attend) or additive float (0 / dtype min). We give a
  bool mask (mask_kind "bool"): a quarter of a float mask's memory. With any mask, CUDA SDPA cannot
  use its flash kernel (that needs is_causal and no mask) and falls back to the memory-efficient one.
- "eager": an additive float mask only (mask_kind "float"). A bool mask is ADDED to the scores as
  0/1 and masks nothing: silently wrong (the tests show it).
- position_ids alone, no attention_mask: transformers derives the block-diagonal mask from position
  ids that restart (find_packed_sequence_indices), but only when past_key_values is None, and the
  model builds a DynamicCache whenever use_cache is true, which config.use_cache makes the default
  even in train mode; a 2-D attention_mask of ones turns the detection off too. Correct only with
  use_cache=False, silently wrong otherwise, so not used here. (Training should pass use_cache=False
  anyway: the cache it builds is never read.)
- "flash_attention_2" (GPU): takes no 4-D mask. It keeps documents apart when the batch is ONE row of
  concatenated documents whose position_ids restart at 0 (it finds cu_seqlens from them in every
  layer, with a host sync each time; with more than one row it runs plain causal attention over each
  whole row, across documents, silently), or when cu_seq_lens_q/k and max_length_q/k are passed as
  keyword arguments (FlashAttentionKwargs). mask_kind "varlen" lays the rows end to end as one row
  [1, rows * length] and passes both, so no layer has to infer anything.
- 4-D masks replace transformers' own mask for every layer, so a model with sliding-window layers
  (Mistral, Gemma 2/3, Qwen2 with use_sliding_window) would lose its window here; "varlen" keeps it
  (flash applies the window itself). trainhub's llama and qwen2 builds have no window.

Measured on an H100 (research/results/packing.md): packed rows with the bool mask train at 2.7x the
real tokens/s of padded micro-batches and half the peak memory, 6% below attention that ignores
document boundaries; the float mask is 18% slower than the bool one.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from trainhub.data.batches import Examples, Position, epoch_order
from trainhub.data.chat import IGNORE

MASK_KINDS = {"sdpa": "bool", "eager": "float", "flash_attention_2": "varlen"}
"""The packed-attention form each attention implementation needs (module docstring says why)."""


def mask_kind_for(attn_implementation: str) -> str:
    if attn_implementation not in MASK_KINDS:
        raise ValueError(f"packing does not support attention {attn_implementation!r}; "
                         f"supported: {', '.join(MASK_KINDS)}")
    return MASK_KINDS[attn_implementation]


def pack_ffd(lengths: list[int], max_length: int) -> list[list[int]]:
    """Rows of example indices, First-Fit-Decreasing; deterministic (ties keep index order).

    Rows come in the order they were opened (the first holds the longest example); within a row,
    examples in the order they were placed. An example longer than max_length is an error: truncate
    or drop before packing."""
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, not {max_length}")
    for i, n in enumerate(lengths):
        if not 1 <= n <= max_length:
            raise ValueError(f"example {i} has {n} tokens; packing takes 1 to max_length={max_length} "
                             f"(truncate or drop longer examples first)")
    # Segment tree over up to len(lengths) rows: leaf r holds row r's free space, each inner node the
    # max of its children. Rows not yet opened are empty (free = max_length) and lie right of every
    # opened row, so "leftmost row with room" is first fit, opening a new row only when none has room.
    size = 1
    while size < max(len(lengths), 1):
        size *= 2
    free = [0] * (2 * size)
    free[size:size + len(lengths)] = [max_length] * len(lengths)
    for node in range(size - 1, 0, -1):
        free[node] = max(free[2 * node], free[2 * node + 1])
    rows: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        need, node = lengths[i], 1
        while node < size:  # descend to the leftmost leaf with room
            node = 2 * node if free[2 * node] >= need else 2 * node + 1
        row = node - size
        if row == len(rows):
            rows.append([])
        rows[row].append(i)
        free[node] -= need
        node //= 2
        while node:
            free[node] = max(free[2 * node], free[2 * node + 1])
            node //= 2
    return rows


def packing_stats(lengths: list[int], rows: list[list[int]], max_length: int) -> dict[str, float]:
    """Rows, real tokens, and fill: the share of the rows' max_length positions holding real tokens."""
    tokens = sum(lengths[i] for row in rows for i in row)
    return {"examples": sum(len(row) for row in rows), "rows": len(rows), "tokens": tokens,
            "fill": tokens / (len(rows) * max_length) if rows else 0.0}


def collate_packed(examples: Examples, rows: list[list[int]], pad_id: int, mask_kind: str, *,
                   length: int | None = None, dtype: torch.dtype = torch.float32) -> dict:
    """A packed micro-batch, ready for `model(**batch)`.

    mask_kind "bool" / "float": input_ids, labels, position_ids [rows, length] and a 4-D
    block-diagonal causal attention_mask [rows, 1, length, length] (bool, or additive in `dtype`).
    mask_kind "varlen": the rows end to end as one row [1, rows * length], position_ids, and the
    flash-attention keywords cu_seq_lens_q/k (int32) and max_length_q/k (Python ints); no mask.
    `length` is the row width (max_length: a fixed shape, no recompiles under torch.compile); None
    means the fullest row of this batch. Padding after a row's last example is its own document
    (positions 0, 1, ...; labels -100), so every query attends to something and no softmax row is
    empty."""
    if mask_kind not in ("bool", "float", "varlen"):
        raise ValueError(f"unknown mask_kind {mask_kind!r}; one of bool, float, varlen")
    fills = [sum(len(examples.input_ids[i]) for i in row) for row in rows]
    width = max(fills) if length is None else length
    if max(fills) > width:
        raise ValueError(f"a row holds {max(fills)} tokens, more than the row length {width}")
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.empty((len(rows), width), dtype=torch.long)
    document = torch.empty((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for d, i in enumerate(row):
            n = len(examples.input_ids[i])
            ids[r, start:start + n] = examples.input_ids[i]
            labels[r, start:start + n] = examples.labels[i]
            labels[r, start] = IGNORE  # scored on the previous document's last position: never a target
            positions[r, start:start + n] = torch.arange(n)
            document[r, start:start + n] = d
            start += n
        positions[r, start:] = torch.arange(width - start)
        document[r, start:] = len(row)
    if mask_kind == "varlen":
        flat = positions.reshape(1, -1)
        starts = (flat[0] == 0).nonzero().flatten()
        cu = torch.cat([starts, torch.tensor([flat.shape[1]])]).to(torch.int32)
        longest = int(cu.diff().max())
        return {"input_ids": ids.reshape(1, -1), "labels": labels.reshape(1, -1), "position_ids": flat,
                "cu_seq_lens_q": cu, "cu_seq_lens_k": cu, "max_length_q": longest, "max_length_k": longest}
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    mask = ((document[:, :, None] == document[:, None, :]) & causal)[:, None]
    if mask_kind == "float":
        mask = torch.zeros(mask.shape, dtype=dtype).masked_fill_(~mask, torch.finfo(dtype).min)
    return {"input_ids": ids, "labels": labels, "position_ids": positions, "attention_mask": mask}


def packed_micro_batches(examples: Examples, rows: list[list[int]], batch_size: int, *, seed: int, shuffle: bool,
                         pad_id: int, max_length: int, mask_kind: str,
                         position: Position) -> Iterator[dict[str, torch.Tensor]]:
    """Like data/batches.py micro_batches, over packed rows: each batch holds `batch_size` rows of
    max_length tokens, plus "num_tokens", its real (non-padding) token count, for the loop to pop."""
    if len(rows) < batch_size:
        raise ValueError(f"{len(rows)} packed rows, fewer than one micro-batch of {batch_size}")
    while True:
        order = epoch_order(len(rows), seed, position.epoch, shuffle)
        while position.index + batch_size <= len(order):
            chosen = [rows[i] for i in order[position.index: position.index + batch_size]]
            position.index += batch_size
            batch = collate_packed(examples, chosen, pad_id, mask_kind, length=max_length)
            batch["num_tokens"] = sum(len(examples.input_ids[i]) for row in chosen for i in row)
            yield batch
        position.epoch += 1
        position.index = 0
