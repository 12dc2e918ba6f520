"""The datasets a job trains on, built once and cached on disk.

`build_datasets(job, tokenizer)` is the one place the engine (and `trainhub data inspect`)
gets token ids and labels from: it reads and encodes the train and eval splits
(data/batches.load_examples) and, for a second run, reuses the result.

Cache: `<cache dir>/data/<key>.pt`, where the key hashes the content of every data
file the job names (folders and globs expanded as the loader does; for a Hugging Face
dataset, the files of a local one or the fingerprint `datasets` gives a prepared one; a
dataset streamed from the Hub has none, and turns the cache off), the tokenizer (its full JSON, chat
template and special tokens), the whole `data` section, the method and loss switch,
the seed (it picks the eval split and the mixture) and this module's format version.
Change any of these and the key changes; nothing is ever reused for different inputs.
The file holds each split as one flat tensor of ids, one of labels and the lengths, so
loading 100k examples is one read; it is loaded with torch.load(weights_only=True) and
written atomically. The cache dir is <trainhub home>/cache (trainhub.home: $TRAINHUB_HOME,
default $XDG_CACHE_HOME/trainhub, else ~/.cache/trainhub); TRAINHUB_NO_CACHE=1 turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from trainhub.data import sources_hf
from trainhub.data.batches import Examples, load_examples
from trainhub.data.sources_files import expand
from trainhub.home import home
from trainhub.job import Job

FORMAT_VERSION = 1


@dataclass
class Datasets:
    train: Examples
    eval: Examples | None
    notes: list[str]
    cache: str
    """'hit', 'miss' (built and saved) or 'off' (TRAINHUB_NO_CACHE, or a source streamed from the Hub)."""


def cache_dir() -> Path:
    return home() / "cache"


def build_datasets(job: Job, tokenizer) -> Datasets:
    train_on = getattr(job.method, "train_on", "all")
    use_cache = os.environ.get("TRAINHUB_NO_CACHE", "") in ("", "0")
    key = cache_key(job, tokenizer, train_on) if use_cache else None
    path = cache_dir() / "data" / f"{key}.pt" if key else None
    if path is not None and path.is_file():
        try:
            return _load(path)
        except Exception:  # a damaged cache file is rebuilt, never trusted
            path.unlink(missing_ok=True)
    notes: list[str] = [] if key or not use_cache else ["data: not cached, a source streams from the Hub"]
    common = {"seed": job.seed, "method": job.method.type, "train_on": train_on, "notes": notes}
    train = load_examples(job.data, tokenizer, split="train", **common)
    eval_ = load_examples(job.data, tokenizer, split="eval", **common) if job.data.has_eval else None
    if path is None:
        return Datasets(train, eval_, notes, "off")
    _save(path, train, eval_, notes)
    return Datasets(train, eval_, notes, "miss")


def cache_key(job: Job, tokenizer, train_on: str) -> str | None:
    """None when a source has no content hash (a dataset streamed from the Hub): no caching then."""
    h = hashlib.sha256()
    h.update(f"v{FORMAT_VERSION}|{job.method.type}|{train_on}|{job.seed}|".encode())
    h.update(json.dumps(job.data.model_dump(mode="json"), sort_keys=True).encode())
    for source in [*job.data.train, *job.data.eval]:
        if source.hf is not None:
            fingerprint = sources_hf.fingerprint(source)
            if fingerprint is None:
                return None
            h.update(f"{source.describe()}|{fingerprint}".encode())
            continue
        for f in expand(source.path):  # every file, expanded exactly as the loader expands it
            h.update(str(f).encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    h.update(_tokenizer_fingerprint(tokenizer).encode())
    return h.hexdigest()[:32]


def _tokenizer_fingerprint(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    extra = [tokenizer.chat_template or "", str(tokenizer.eos_token), str(tokenizer.pad_token),
             str(tokenizer.bos_token), type(tokenizer).__name__]
    return hashlib.sha256((body + "|".join(extra)).encode()).hexdigest()


def _pack(ex: Examples) -> dict:
    same = all(a is b or torch.equal(a, b) for a, b in zip(ex.input_ids, ex.labels, strict=True))
    return {"ids": torch.cat(ex.input_ids), "labels": None if same else torch.cat(ex.labels),
            "lengths": torch.tensor([len(x) for x in ex.input_ids]), "stats": ex.stats}


def _unpack(d: dict) -> Examples:
    lengths = d["lengths"].tolist()
    ids = list(torch.split(d["ids"], lengths))
    labels = ids if d["labels"] is None else list(torch.split(d["labels"], lengths))
    return Examples(ids, labels, dict(d["stats"]))


def _save(path: Path, train: Examples, eval_: Examples | None, notes: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"train": _pack(train), "eval": _pack(eval_) if eval_ is not None else None, "notes": notes}, tmp)
    os.replace(tmp, path)


def _load(path: Path) -> Datasets:
    d = torch.load(path, weights_only=True)
    return Datasets(_unpack(d["train"]), _unpack(d["eval"]) if d["eval"] is not None else None,
                    list(d["notes"]), "hit")
