"""A transformers byte-level BPE tokenizer -> GGUF tokenizer metadata (llama.cpp's "gpt2" tokenizer model).

What llama.cpp needs to tokenize exactly as transformers does:
  - every token's text, in id order, in the byte-level alphabet tokenizer.json uses (llama.cpp maps
    it back to bytes itself), and a type: NORMAL, CONTROL for special added tokens (never produced
    from plain text, parsed only where special tokens are), USER_DEFINED for other added tokens,
    UNUSED for embedding rows past the tokenizer's end;
  - the merges, in rank order, as "left right";
  - the pre-tokenizer, by name (tokenizer.ggml.pre): llama.cpp's splitting regexes are compiled in,
    so the name must be one whose regex equals the tokenizer's. It is read from tokenizer.json:
    ByteLevel's own split (use_regex) is GPT-2's; a Split with a known regex is that model's. Any
    other is refused by name: a guessed one would tokenize differently, and the export verification
    compares tokenisation on fixed prompts to catch exactly that;
  - bos/eos/pad ids, whether a BOS is added (observed by tokenizing, not read from a flag), and the
    chat template.
SentencePiece tokenizers (Llama 2, Mistral v0.1, Gemma) are not byte-level BPE and are refused.
"""

from __future__ import annotations

import json

from trainhub.export.gguf_arch import ConvertError

GPT2_SPLIT = "gpt-2"
# llama.cpp pre-tokenizer names by the regex of a Split pre-tokenizer (tokenizer.json's
# pre_tokenizer: Sequence[Split(Regex), ByteLevel(use_regex=false)]), as the released models write it.
KNOWN_SPLITS = {
    # Llama 3 / 3.1 / 3.2
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "llama-bpe",
    # Qwen2, Qwen2.5, Qwen3 (one digit per token)
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+":
        "qwen2",
}

NORMAL, CONTROL, USER_DEFINED, UNUSED = 1, 3, 4, 5  # gguf.TokenType values


def pre_tokenizer_name(spec: dict) -> str:
    """llama.cpp's name for the tokenizer.json pre_tokenizer `spec`, or ConvertError."""
    kind = (spec or {}).get("type")
    if kind == "ByteLevel" and spec.get("use_regex", True) and not spec.get("add_prefix_space", False):
        return GPT2_SPLIT
    if kind == "Sequence":
        parts = spec.get("pretokenizers", [])
        splits = [p for p in parts if p.get("type") == "Split"]
        rest = [p for p in parts if p.get("type") != "Split"]
        if (len(splits) == 1 and all(p.get("type") == "ByteLevel" and not p.get("use_regex", True) for p in rest)
                and splits[0].get("behavior") == "Isolated"):
            regex = splits[0].get("pattern", {}).get("Regex")
            if regex in KNOWN_SPLITS:
                return KNOWN_SPLITS[regex]
            raise ConvertError(f"the tokenizer splits text with a regex llama.cpp has no name for: {regex!r}")
    raise ConvertError(f"the tokenizer's pre-tokenizer ({json.dumps(spec)[:200]}) is not one llama.cpp reproduces "
                       f"(byte-level BPE with the GPT-2, Llama 3 or Qwen2 split)")


def write_vocab(writer, tokenizer, n_vocab: int) -> dict:
    """Write the tokenizer into the GGUF metadata; returns what was written (for export.json)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str()) if getattr(tokenizer, "is_fast", False) else None
    if spec is None or spec["model"].get("type") != "BPE":
        kind = spec["model"].get("type") if spec else type(tokenizer).__name__
        raise ConvertError(f"GGUF export needs a byte-level BPE tokenizer (fast); this one is {kind}")
    if spec.get("decoder", {}).get("type") != "ByteLevel":
        raise ConvertError("GGUF export needs a byte-level BPE tokenizer; this one's decoder is "
                           f"{spec.get('decoder', {}).get('type')}")
    pre = pre_tokenizer_name(spec.get("pre_tokenizer"))
    vocab = tokenizer.get_vocab()
    if len(vocab) > n_vocab:
        raise ConvertError(f"the tokenizer has {len(vocab)} tokens, the model only {n_vocab} embedding rows")
    tokens: list[str | None] = [None] * n_vocab
    for text, i in vocab.items():
        tokens[i] = text
    types = [NORMAL] * n_vocab
    for i, added in tokenizer.added_tokens_decoder.items():
        types[i] = CONTROL if added.special else USER_DEFINED
    for i, text in enumerate(tokens):
        if text is None:  # rows past the tokenizer (a padded embedding): never produced, never parsed
            tokens[i], types[i] = f"[PAD{i}]", UNUSED
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]

    probe = tokenizer("a")["input_ids"]
    add_bos = tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id]
    add_eos = tokenizer.eos_token_id is not None and probe[-1:] == [tokenizer.eos_token_id] and len(probe) > 1

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    eos = tokenizer.eos_token_id
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else eos  # GPT-2's own convention
    if bos is not None:
        writer.add_bos_token_id(bos)
    if eos is not None:
        writer.add_eos_token_id(eos)
    if tokenizer.pad_token_id is not None:
        writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(add_bos)
    writer.add_add_eos_token(add_eos)
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    if template:
        writer.add_chat_template(template)
    return {"model": "gpt2 (byte-level BPE)", "pre": pre, "tokens": len(vocab), "rows": n_vocab,
            "merges": len(merges), "bos_id": bos, "eos_id": eos, "pad_id": tokenizer.pad_token_id,
            "add_bos": add_bos, "chat_template": bool(template)}
