"""Does the GGUF file answer as the Hugging Face model does? llama.cpp against transformers, on fixed prompts.

Checked, after every export and in the tests:
  - llama.cpp (llama-cpp-python) loads the file;
  - tokenisation: llama.cpp's token ids of every prompt equal the HF tokenizer's (special tokens
    parsed, BOS as the tokenizer adds it);
  - next-token log-probabilities at every position of every prompt (the HF ids fed to both):
    the largest absolute difference over the whole vocabulary, top-1 agreement, and the KL divergence
    KL(HF || GGUF) per position (mean and max);
  - greedy continuations of GREEDY_TOKENS tokens from the first prompts, token by token.

Limits per type (LIMITS) decide `passed`. The float types are the model itself, rounded: f32 must
agree to float-summation noise, f16/bf16 within the rounding of their weights (bf16 keeps 8 bits of
mantissa: a wider bound), with top-1 agreement everywhere and, for f32/f16, identical greedy text.
Quantized types change the model on purpose: they are held to a top-1 agreement and a mean KL that
tighten with the bits per weight. The numbers are written to export.json and printed whether or not
they pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROMPTS = (
    "Once upon a time, there was a little",
    "The sky is blue and the sun is bright. She said:",
    "1, 2, 3, 4, 5, 6 and 1234567 apples cost $3.50!",
    "  Leading spaces,\ttabs\nand two\n\nnewlines.",
    "Café naïve résumé — 日本語 and 🙂 emoji.",
)
"""Words, digits and punctuation, whitespace runs, non-ASCII and emoji: where tokenizers differ."""
CHAT = ({"role": "system", "content": "You are brief."}, {"role": "user", "content": "Tell me a story."})
GREEDY_TOKENS = 16
GREEDY_PROMPTS = 3


@dataclass(frozen=True)
class Limit:
    max_abs: float | None = None
    """Largest |log p_HF - log p_GGUF| allowed (float types)."""
    top1: float = 1.0
    """Smallest share of positions whose most likely token agrees."""
    kl_mean: float | None = None
    """Largest mean KL(HF || GGUF) in nats (quantized types)."""
    greedy: bool = False
    """Greedy continuations must be identical."""


LIMITS = {
    "f32": Limit(max_abs=0.01, greedy=True),
    "f16": Limit(max_abs=0.05, greedy=True),
    "bf16": Limit(max_abs=0.25),
    "q8_0": Limit(top1=0.95, kl_mean=0.005),
    "q6_k": Limit(top1=0.95, kl_mean=0.01),
    "q5_k_m": Limit(top1=0.9, kl_mean=0.02),
    "q5_k_s": Limit(top1=0.9, kl_mean=0.02),
    "q4_k_m": Limit(top1=0.85, kl_mean=0.05),
    "q4_k_s": Limit(top1=0.85, kl_mean=0.05),
    "q4_0": Limit(top1=0.8, kl_mean=0.1),
    "q3_k_m": Limit(top1=0.75, kl_mean=0.15),
    "q2_k": Limit(top1=0.5, kl_mean=0.5),
}


def prompts(tokenizer) -> list[str]:
    out = list(PROMPTS)
    if tokenizer.chat_template:
        out.append(tokenizer.apply_chat_template(list(CHAT), tokenize=False, add_generation_prompt=True))
    return out


def load_llama(path: Path, n_ctx: int):
    """llama.cpp's model through llama-cpp-python, CPU, every position's logits kept."""
    import os

    from llama_cpp import Llama

    return Llama(model_path=str(path), n_ctx=n_ctx, n_batch=max(n_ctx, 64), logits_all=True, verbose=False,
                 n_threads=max(1, min(8, os.cpu_count() or 1)), seed=0)


def verify(path: Path, model, tokenizer, quant: str) -> dict:
    """Compare the GGUF at `path` with the HF `model` (float32, eval) and `tokenizer`; a dict for export.json."""
    import torch

    limit = LIMITS[quant]
    n_pos = getattr(model.config, "max_position_embeddings", None) or model.config.n_positions
    texts = prompts(tokenizer)
    ids = [tokenizer(t)["input_ids"][: n_pos - GREEDY_TOKENS] for t in texts]
    n_ctx = min(n_pos, max(len(i) for i in ids) + GREEDY_TOKENS + 1)
    try:
        llm = load_llama(path, n_ctx)
    except Exception as err:  # llama-cpp-python raises ValueError; a crash in C never returns here
        failure = f"llama.cpp could not load the file ({type(err).__name__}: {err})"
        return {"quant": quant, "loads": False, "failures": [failure], "passed": False}
    try:
        mismatched = []
        for text, hf_ids in zip(texts, ids, strict=False):
            gg = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)[: len(hf_ids)]
            if gg != hf_ids:
                mismatched.append({"prompt": text, "hf": hf_ids, "llama.cpp": gg})
        worst, mean_abs, agree, kls, total = 0.0, 0.0, 0, [], 0
        for hf_ids in ids:
            with torch.no_grad():
                ref = torch.log_softmax(model(torch.tensor([hf_ids])).logits[0].double(), -1).numpy()
            got = _log_softmax(_logits(llm, hf_ids))
            diff = np.abs(ref - got)
            worst = max(worst, float(diff.max()))
            mean_abs += float(diff.mean()) * len(hf_ids)
            agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
            kls += list((np.exp(ref) * (ref - got)).sum(-1))
            total += len(hf_ids)
        greedy = [_greedy_pair(llm, model, hf_ids) for hf_ids in ids[:GREEDY_PROMPTS]]
    finally:
        llm.close() if hasattr(llm, "close") else None
    result = {
        "quant": quant, "loads": True, "prompts": len(texts), "positions": total,
        "tokenization_identical": not mismatched, "tokenization_mismatches": mismatched[:3],
        "logprob_max_abs_diff": _sig(worst), "logprob_mean_abs_diff": _sig(mean_abs / total),
        "top1_agreement": round(agree / total, 4), "kl_mean": _sig(max(0.0, float(np.mean(kls)))),
        "kl_max": _sig(max(0.0, float(np.max(kls)))),
        "greedy_identical": all(a == b for a, b in greedy), "greedy_tokens": GREEDY_TOKENS,
        "greedy_first_difference": next((_first_diff(a, b) for a, b in greedy if a != b), None),
        "limits": {k: v for k, v in vars(limit).items() if v is not None},
    }
    result["failures"] = failures(result, limit)
    result["passed"] = not result["failures"]
    return result


def failures(r: dict, limit: Limit) -> list[str]:
    out = []
    if not r["tokenization_identical"]:
        out.append("tokenisation differs from the HF tokenizer's")
    if limit.max_abs is not None and r["logprob_max_abs_diff"] > limit.max_abs:
        out.append(f"log-prob max abs diff {r['logprob_max_abs_diff']:.4g} > {limit.max_abs}")
    if r["top1_agreement"] < limit.top1:
        out.append(f"top-1 agreement {r['top1_agreement']:.2%} < {limit.top1:.0%}")
    if limit.kl_mean is not None and r["kl_mean"] > limit.kl_mean:
        out.append(f"mean KL {r['kl_mean']:.4g} > {limit.kl_mean}")
    if limit.greedy and not r["greedy_identical"]:
        out.append(f"greedy continuation differs ({r['greedy_first_difference']})")
    return out


def summary(r: dict) -> str:
    """One line for the console."""
    if not r["loads"]:
        return f"verify {r['quant']}: FAILED: {r['failures'][0]}"
    head = "passed" if r["passed"] else "FAILED: " + "; ".join(r["failures"])
    return (f"verify {r['quant']}: {head} — tokenisation {'identical' if r['tokenization_identical'] else 'DIFFERS'} "
            f"on {r['prompts']} prompts; over {r['positions']} positions: log-prob max abs diff "
            f"{r['logprob_max_abs_diff']:.2e}, top-1 {r['top1_agreement']:.1%}, KL mean {r['kl_mean']:.2e} "
            f"max {r['kl_max']:.2e}; greedy {r['greedy_tokens']} tokens "
            f"{'identical' if r['greedy_identical'] else 'differ'}")


def _sig(x: float) -> float:
    """Three significant digits: a KL of 3e-7 stays visible."""
    return float(f"{x:.3g}")


def _logits(llm, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float64)


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _greedy_pair(llm, model, ids: list[int]) -> tuple[list[int], list[int]]:
    import torch

    hf, seq = [], list(ids)
    with torch.no_grad():
        for _ in range(GREEDY_TOKENS):
            nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            hf.append(nxt)
            seq.append(nxt)
    llm.reset()
    llm.eval(ids)
    gg = []
    for _ in range(GREEDY_TOKENS):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        gg.append(nxt)
        llm.eval([nxt])
    return hf, gg


def _first_diff(a: list[int], b: list[int]) -> str:
    i = next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    return f"token {i}: HF {a[i]}, llama.cpp {b[i]}"
