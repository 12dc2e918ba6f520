#!/usr/bin/env python3
"""Rollout throughput: the native sampler (engine/rl/rollout.py), eager and compiled, against transformers'
`generate` (what TRL's GRPOTrainer runs without vLLM), on the same weights, in one process.

Work: 8 prompts x 8 generations x 256 new tokens (64 rows), as research/bench_grpo_trl.py's GRPO step
generates; prompts are 8 of the shipped arithmetic prompts' lengths (random ids). Model: Qwen2.5-0.5B-
shaped, random init (hidden 896, intermediate 4864, 24 layers, 14 heads, 2 KV heads, vocab 151936, tied,
q/k/v biases, rope theta 1e6), bf16 weights; the native sampler runs under bf16 autocast as the training
loop does. A random model practically never samples the EOS id, so every row runs to 256 tokens on every
side and the count is the same work (completion tokens counted up to EOS, as GRPO counts them).

Variants:
    native            Sampler(compiled=False): static KV cache, eager decode step
    native-compiled   Sampler(compiled=True): the decode step through torch.compile, mode reduce-overhead
                      (CUDA graphs); the first call compiles and is left out with the warm-up
    hf-generate       transformers' generate(do_sample=True, top_k=0), dynamic cache: TRL's path without vLLM

For each: completion tokens/s (median over --repeats after --warmup calls), seconds per rollout, peak
memory of the call. The issue's anchor: TRL without vLLM, 6.7 s/step ~ 2.4k completion tokens/s on an H200
(research/results/grpo_trl.md: 2.3k on an H100, whole step).

    PYTHONPATH=backend python research/bench_rl_rollout.py --tiny          # CPU check of the script
    PYTHONPATH=backend python research/bench_rl_rollout.py --out r.json    # GPU: the real sizes
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "backend"))

from trainhub.engine.device import Precision  # noqa: E402
from trainhub.engine.models.hf_names import args_from_hf, from_hf  # noqa: E402
from trainhub.engine.models.transformer import CausalLM  # noqa: E402
from trainhub.engine.rl.rollout import Sampler, SamplingSpec  # noqa: E402

REAL = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "vocab_size": 151936, "prompts": 8, "group": 8, "new_tokens": 256}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 512, "prompts": 2, "group": 2, "new_tokens": 16}
PROMPT_LENGTHS = (38, 41, 36, 44, 39, 42, 37, 40)
"""Tokens in 8 rendered arithmetic prompts (chat template + question) under a Qwen-sized tokenizer."""


def models(size: dict, device: torch.device, dtype: torch.dtype):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(vocab_size=size["vocab_size"], hidden_size=size["hidden_size"],
                         intermediate_size=size["intermediate_size"], num_hidden_layers=size["num_hidden_layers"],
                         num_attention_heads=size["num_attention_heads"],
                         num_key_value_heads=size["num_key_value_heads"], rope_theta=1e6, tie_word_embeddings=True,
                         max_position_embeddings=4096, pad_token_id=0, eos_token_id=1, bos_token_id=None)
    torch.manual_seed(0)
    hf = Qwen2ForCausalLM(config).to(device=device, dtype=dtype).eval()
    args = args_from_hf(hf.config)
    with torch.device("meta"):
        ours = CausalLM(args)
    ours.load_state_dict(from_hf(hf.state_dict(), args), assign=True)
    ours.tie_weights()
    ours.reset_buffers()
    return hf, ours.eval()


def prompts(size: dict) -> list[list[int]]:
    gen = torch.Generator().manual_seed(0)
    out = [torch.randint(2, size["vocab_size"], (PROMPT_LENGTHS[i % 8],), generator=gen).tolist()
           for i in range(size["prompts"])]
    return [p for p in out for _ in range(size["group"])]


def timed(fn, device: torch.device) -> tuple[float, int, float]:
    """(seconds, completion tokens, peak GB) of one call."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    tokens = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else 0.0
    return time.perf_counter() - t0, tokens, peak


def native(ours, rows, size, device, compiled: bool):
    precision = Precision("bf16 autocast", torch.bfloat16, False) if device.type == "cuda" else Precision("fp32", None, False)
    sampler = Sampler(ours, SamplingSpec(max_new_tokens=size["new_tokens"], temperature=1.0, top_p=1.0),
                      eos_ids=[1], pad_id=0, device=device, precision=precision, compiled=compiled)
    gen = torch.Generator(device).manual_seed(0)
    return lambda: int(sampler.sample(rows, gen).completion_mask.sum())


def hf_generate(hf, rows, size, device):
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, width - len(r):], mask[i, width - len(r):] = torch.tensor(r), 1
    ids, mask = ids.to(device), mask.to(device)

    def run() -> int:
        out = hf.generate(input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                          max_new_tokens=size["new_tokens"], pad_token_id=0, eos_token_id=1)[:, width:]
        is_eos = out == 1
        after = (is_eos.cumsum(-1) - is_eos.long()) > 0
        return int((~after).sum())
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (a CPU check of the script)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--variants", default="native,native-compiled,hf-generate")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    size = TINY if a.tiny else REAL
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    hf, ours = models(size, device, dtype)
    rows = prompts(size)
    results = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "torch": torch.__version__,
               "size": size, "rows": len(rows), "variants": {}}
    for name in a.variants.split(","):
        try:
            if name == "hf-generate":
                fn = hf_generate(hf, rows, size, device)
            elif name in ("native", "native-compiled"):
                if name == "native-compiled" and device.type != "cuda":
                    print("native-compiled: skipped on the CPU (Inductor's CPU code is not what is measured)")
                    continue
                fn = native(ours, rows, size, device, compiled=name == "native-compiled")
            else:
                raise SystemExit(f"unknown variant {name}")
            warm = [timed(fn, device) for _ in range(a.warmup)]
            runs = [timed(fn, device) for _ in range(a.repeats)]
        except Exception as err:  # a variant that fails is reported, the others still run
            results["variants"][name] = {"error": f"{type(err).__name__}: {err}"}
            print(f"{name}: failed: {type(err).__name__}: {err}", flush=True)
            continue
        rates = [tokens / s for s, tokens, _ in runs]
        results["variants"][name] = {
            "tokens_per_s_median": statistics.median(rates), "seconds_median": statistics.median(s for s, _, _ in runs),
            "tokens_per_rollout": runs[-1][1], "peak_gb": max(p for _, _, p in runs),
            "first_call_s": warm[0][0] if warm else None, "runs": [{"s": s, "tokens": t} for s, t, _ in runs]}
        print(f"{name}: {statistics.median(rates):,.0f} completion tokens/s", flush=True)
    base = results["variants"].get("hf-generate", {}).get("tokens_per_s_median")
    print(f"\n{len(rows)} rows x {size['new_tokens']} new tokens on {results['device']}")
    print(f"{'variant':<18}{'tokens/s':>12}{'s/rollout':>11}{'peak GB':>9}{'vs hf':>8}")
    for name, r in results["variants"].items():
        if "error" in r:
            print(f"{name:<18}{'failed':>12}")
            continue
        ratio = f"{r['tokens_per_s_median'] / base:.1f}x" if base else ""
        print(f"{name:<18}{r['tokens_per_s_median']:>12,.0f}{r['seconds_median']:>11.2f}{r['peak_gb']:>9.2f}{ratio:>8}")
    if a.out:
        a.out.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
