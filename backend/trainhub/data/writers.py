"""Writers: the same data, handed to other training stacks in their own formats.

trainhub reads and validates data once (data/sources.py); a runner that drives
another stack calls one of these to lay the data out the way that stack reads it:

  LLaMA-Factory  `dataset_info.json` registering files by absolute path, and the files:
                 text -> {"text"} records (columns {prompt: text}); conversations ->
                 {"messages": [{role, content}]} records declared as sharegpt with
                 OpenAI role/content tags; preference pairs -> {"messages": prompt turns,
                 "chosen": {role, content}, "rejected": {role, content}} declared sharegpt with
                 ranking: true; KTO examples -> {"messages": prompt turns + the completion,
                 "label": bool} declared sharegpt with columns {kto_tag: label}.
  nanoGPT        `train.bin` / `val.bin`: every document's token ids followed by EOS,
                 concatenated, as little-endian uint16 (nanoGPT memory-maps them), and
                 `meta.pkl` holding {"vocab_size": V} (V may pad the tokenizer's size). uint16
                 caps the tokenizer at 65,536 tokens.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable
from pathlib import Path

import numpy as np

UINT16_LIMIT = 65_536


_LF_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
            "system_tag": "system", "observation_tag": "tool"}
_LF_LAYOUTS = {
    "text": {"columns": {"prompt": "text"}},
    "messages": {"formatting": "sharegpt", "columns": {"messages": "messages"}, "tags": _LF_TAGS},
    "preference": {"formatting": "sharegpt", "ranking": True,
                   "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected"}, "tags": _LF_TAGS},
    "kto": {"formatting": "sharegpt", "columns": {"messages": "messages", "kto_tag": "label"}, "tags": _LF_TAGS},
}


def write_llamafactory(folder: Path, name: str, records: Iterable, kind: str) -> Path:
    """Write `<folder>/<name>.jsonl` and `<folder>/dataset_info.json`; returns the dataset_info path.

    kind: "text" (records are strings), "messages" (lists of {role, content}), "preference" (objects
    with prompt, chosen, rejected: strings or message lists, as data.formats.PreferencePair) or "kto"
    (objects with prompt, completion, label: bool). A prompt string is one user turn; an answer string
    one assistant turn.
    """
    if kind not in _LF_LAYOUTS:
        raise ValueError(f"no LLaMA-Factory layout for data kind '{kind}' ({', '.join(_LF_LAYOUTS)})")
    row_of = {"text": lambda r: {"text": r}, "messages": lambda r: {"messages": r}, "preference": _lf_pair,
              "kto": _lf_kto}[kind]
    folder.mkdir(parents=True, exist_ok=True)
    data = (folder / f"{name}.jsonl").resolve()
    with open(data, "w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(row_of(record), ensure_ascii=False) + "\n")
    entry = {"file_name": str(data), **_LF_LAYOUTS[kind]}
    info_path = folder / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info[name] = entry
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return info_path


def _turns(value, role: str) -> list[dict]:
    return [{"role": role, "content": value}] if isinstance(value, str) else list(value)


def _answer(value, where: str) -> dict:
    """LLaMA-Factory's ranking format holds one assistant message per answer."""
    turns = _turns(value, "assistant")
    if len(turns) != 1 or turns[0].get("role") != "assistant":
        raise ValueError(f"{where}: LLaMA-Factory takes a single assistant message as an answer, "
                         f"not {len(turns)} turns")
    return {"role": "assistant", "content": turns[0]["content"]}


def _lf_pair(r) -> dict:
    where = getattr(r, "where", "a preference record")
    return {"messages": _turns(r.prompt, "user"), "chosen": _answer(r.chosen, where),
            "rejected": _answer(r.rejected, where)}


def _lf_kto(r) -> dict:
    where = getattr(r, "where", "a KTO record")
    return {"messages": _turns(r.prompt, "user") + [_answer(r.completion, where)], "label": bool(r.label)}


def write_nanogpt(folder: Path, tokenizer, train_texts: Iterable[str], val_texts: Iterable[str],
                  vocab_size: int | None = None) -> dict:
    """train.bin, val.bin and meta.pkl in `folder`; returns token counts {train, val}.

    `vocab_size` (default: the tokenizer's size) goes to meta.pkl: nanoGPT builds its embedding with
    that many rows, so a larger value pads the vocabulary; a smaller one would leave ids without a row.
    """
    vocab = len(tokenizer)
    if vocab > UINT16_LIMIT:
        raise ValueError(f"nanoGPT stores token ids as uint16: the tokenizer has {vocab:,} tokens, more than "
                         f"{UINT16_LIMIT:,}; use a smaller vocabulary")
    rows = vocab if vocab_size is None else vocab_size
    if rows < vocab:
        raise ValueError(f"vocab_size {rows:,} is smaller than the tokenizer ({vocab:,} tokens)")
    folder.mkdir(parents=True, exist_ok=True)
    counts = {}
    for split, texts in (("train", train_texts), ("val", val_texts)):
        ids = _token_stream(tokenizer, texts)
        if ids.size == 0:
            raise ValueError(f"nanoGPT needs a non-empty {split} split")
        ids.astype("<u2").tofile(folder / f"{split}.bin")
        counts[split] = int(ids.size)
    with open(folder / "meta.pkl", "wb") as f:
        pickle.dump({"vocab_size": rows}, f)
    return counts


def _token_stream(tokenizer, texts: Iterable[str]) -> np.ndarray:
    eos = tokenizer.eos_token_id
    chunks = []
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == 1024:
            chunks.append(_encode(tokenizer, batch, eos))
            batch = []
    if batch:
        chunks.append(_encode(tokenizer, batch, eos))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)


def _encode(tokenizer, texts: list[str], eos: int) -> np.ndarray:
    out: list[int] = []
    for seq in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        out.extend(seq)
        out.append(eos)
    return np.asarray(out, dtype=np.int64)
