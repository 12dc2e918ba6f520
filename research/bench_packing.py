#!/usr/bin/env python3
"""Benchmark: SFT with packed rows (trainhub.data.packing) vs one example per row, padded.

Three parts, one process:

  ffd        pack_ffd's time and fill on 100,000 lengths drawn like an SFT set (log-normal, median
             300 tokens, clipped to 16..2048), rows of 2048
  agreement  on the device, the packed batch's mean loss minus the unpacked one's, for each mask
             kind, in fp32 (TF32 off) and under bf16 autocast: the CUDA kernels keep documents apart
  speed      training steps (forward, backward, fused AdamW; bf16 autocast, fp32 master weights) of
             a Llama of about 160M parameters (hidden 768, MLP 2048, 12 layers, 12 heads, 4 KV
             heads, vocab 32000, sdpa attention) on 2,048 examples from that distribution:
               padded        8 examples per micro-batch, padded to the longest (batches.collate)
               padded-64     the same, widths rounded up to a multiple of 64
               packed-bool   4 FFD rows of 2048 per micro-batch, 4-D bool mask (the sdpa default)
               packed-float  the same with an additive float mask
               packed-posids the same rows, no mask, position_ids + use_cache=False (transformers
                             builds the block mask itself)
               unmasked      the same rows with plain causal attention across documents: WRONG, the
                             ceiling the masks are measured against (SDPA's flash kernel)
             Real (non-padding) tokens per second over the same micro-batches run twice, cold
             (first sight of each shape) and warm, and peak memory.

    PYTHONPATH=backend python research/bench_packing.py --out results.json
    PYTHONPATH=backend python research/bench_packing.py --tiny      # CPU smoke test of the script
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time

import torch
import torch.nn.functional as F

from trainhub.data.batches import Examples, collate, count_targets
from trainhub.data.chat import IGNORE
from trainhub.data.packing import collate_packed, pack_ffd, packing_stats

SHAPE = dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
             num_key_value_heads=4, vocab_size=32000, max_length=2048, examples=2048, rows=4, batch=8)
TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=128, max_length=128, examples=64, rows=2, batch=4)


def sft_lengths(n: int, max_length: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    median = 300 * max_length / 2048
    return [min(max_length, max(16, round(rng.lognormvariate(math.log(median), 0.8)))) for _ in range(n)]


def make_examples(lengths: list[int], vocab: int) -> Examples:
    g = torch.Generator().manual_seed(0)
    ids = [torch.randint(1, vocab, (n,), generator=g) for n in lengths]
    labels = [torch.cat([torch.full((n * 2 // 5,), IGNORE), x[n * 2 // 5:]]) for n, x in zip(lengths, ids, strict=True)]
    return Examples(ids, labels)  # the first 40% of each example is an unlabelled prompt


def bench_ffd(max_length: int, n: int) -> dict:
    lengths = sft_lengths(n, max_length, seed=1)
    t0 = time.perf_counter()
    rows = pack_ffd(lengths, max_length)
    return {"examples": n, "seconds": time.perf_counter() - t0, **packing_stats(lengths, rows, max_length)}


def build_model(shape: dict, device):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**{k: shape[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers",
                                                  "num_attention_heads", "num_key_value_heads", "vocab_size")},
                         max_position_embeddings=shape["max_length"], pad_token_id=0)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return LlamaForCausalLM(config).to(device)


def micro_batches(variant: str, ex: Examples, rows: list[list[int]], shape: dict) -> list[dict]:
    if variant.startswith("padded"):
        order = list(range(len(ex)))
        random.Random(0).shuffle(order)
        batches = [collate(ex, order[k:k + shape["batch"]], 0) for k in range(0, len(order), shape["batch"])]
        return batches if variant == "padded" else [pad_to_multiple(b, 64) for b in batches]
    kind = {"packed-bool": "bool", "packed-float": "float"}.get(variant, "bool")
    out = []
    for k in range(0, len(rows), shape["rows"]):
        b = collate_packed(ex, rows[k:k + shape["rows"]], 0, kind, length=shape["max_length"])
        if variant in ("packed-posids", "unmasked"):
            del b["attention_mask"]  # every call passes use_cache=False, which packed-posids needs
        if variant == "unmasked":
            del b["position_ids"]
        out.append(b)
    return out


def pad_to_multiple(batch: dict, multiple: int) -> dict:
    extra = -batch["input_ids"].shape[1] % multiple
    fill = {"input_ids": 0, "labels": IGNORE, "attention_mask": 0}
    return {k: F.pad(v, (0, extra), value=fill[k]) for k, v in batch.items()}


def to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def real_tokens(batch: dict) -> int:
    """Non-padding tokens (the engine's tokens/s counts these)."""
    if "attention_mask" in batch and batch["attention_mask"].dim() == 2:
        return int(batch["attention_mask"].sum())
    return int((batch["input_ids"] != 0).sum())  # ids are drawn from 1..vocab-1, 0 is padding


def agreement(shape: dict, device, ex: Examples, rows: list[list[int]]) -> dict:
    model = build_model(shape, device).eval()
    k = min(len(rows), shape["rows"])
    index = [i for row in rows[:k] for i in row]
    unpacked = to(collate(ex, index, 0), device)
    out = {}
    torch.backends.cuda.matmul.allow_tf32 = False
    for precision in ("fp32", "bf16"):
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=precision == "bf16"):
            want = model(**unpacked, use_cache=False).loss.float()
            for kind in ("bool", "float"):
                packed = to(collate_packed(ex, rows[:k], 0, kind, length=shape["max_length"]), device)
                assert count_targets(packed) == count_targets(unpacked)
                got = model(**packed, use_cache=False).loss.float()
                out[f"{precision}-{kind}"] = {"unpacked": float(want), "delta": float(got - want)}  # sync
    return out


def speed(variant: str, shape: dict, device, ex: Examples, rows, steps: int) -> dict:
    """Two passes over the same `steps` micro-batches: cold (each shape seen for the first time) and
    warm (every shape seen once). Each new shape costs a cuDNN attention plan on CUDA: padded batches
    have one shape per width, packed rows one shape in all."""
    model = build_model(shape, device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    batches = micro_batches(variant, ex, rows, shape)[:steps]
    tokens = sum(real_tokens(b) for b in batches)
    seconds = []
    for _ in range(2):
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for batch in batches:
            with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
                loss = model(**to(batch, device), use_cache=False).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t0)
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    return {"tokens_per_s": tokens / seconds[1], "tokens_per_s_cold": tokens / seconds[0], "real_tokens": tokens,
            "seconds": seconds[1], "peak_mem_gb": mem, "shapes": len({tuple(b["input_ids"].shape) for b in batches}),
            "positions_per_batch": sum(b["input_ids"].numel() for b in batches) / len(batches)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small shapes, a few steps (CPU smoke test)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    shape = TINY if args.tiny else SHAPE
    steps = 3 if args.tiny else args.steps
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "shape": shape}
    import transformers

    results["transformers"] = transformers.__version__
    results["ffd"] = bench_ffd(shape["max_length"], 1000 if args.tiny else 100_000)
    print("ffd", json.dumps(results["ffd"]), flush=True)
    lengths = sft_lengths(shape["examples"], shape["max_length"])
    ex = make_examples(lengths, shape["vocab_size"])
    rows = pack_ffd(lengths, shape["max_length"])
    results["data"] = packing_stats(lengths, rows, shape["max_length"])
    results["agreement"] = agreement(shape, device, ex, rows)
    print("agreement", json.dumps(results["agreement"]), flush=True)
    results["speed"] = {}
    for variant in ("padded", "padded-64", "packed-bool", "packed-float", "packed-posids", "unmasked"):
        results["speed"][variant] = speed(variant, shape, device, ex, rows, steps)
        print(variant, json.dumps(results["speed"][variant]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
