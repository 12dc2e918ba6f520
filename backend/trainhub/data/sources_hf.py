"""Hugging Face datasets as a data source: `{hf: NAME, split, subset, revision, streaming, take}`.

NAME is a dataset on the Hub (`org/name`, read from the local `datasets` cache when offline), a
local dataset folder (its data files, as a Hub repository holds them) or a folder written by
`Dataset.save_to_disk` / `DatasetDict.save_to_disk`. Rows come out as plain dicts and go through
the same format parsing, checks and counts as file records; a row's location is
`hf:NAME[split] row N` (from 0).

`streaming: true` reads rows as they arrive, without preparing the whole dataset on disk first:
with `take: N` only the first N rows are read, the way to sample a large corpus. A streamed Hub
source has no content hash to key the tokenized-data cache on, so a job that streams from the Hub
is tokenized on every run (the start row's notes say so).
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainhub.data.formats import DataError

DATASETS_MISSING = "reading Hugging Face datasets needs the datasets package: pip install 'trainhub[datasets]'"


def label(source) -> str:
    subset = f"/{source.subset}" if source.subset else ""
    return f"hf:{source.hf}{subset}[{source.split}]"


def is_local(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).exists()


def check(source) -> str | None:
    """What stops the source from loading, found without loading it (for preflight)."""
    if importlib.util.find_spec("datasets") is None:
        return DATASETS_MISSING
    if source.hf.startswith((".", "/", "~")) and not Path(source.hf).expanduser().exists():
        return f"dataset folder not found: {source.hf}"
    return None


def read(source) -> Iterator[tuple[str, Any]]:
    """(where, row) for the rows of the source, in order, the first `take` only when it is set."""
    rows = _rows(source)
    if source.take is not None:
        rows = itertools.islice(rows, source.take)
    name = label(source)
    try:
        for i, row in enumerate(rows):
            yield f"{name} row {i}", dict(row)
    except Exception as err:  # a stream that breaks halfway is a source that cannot be read
        raise DataError(f"{name}: reading failed: {type(err).__name__}: {err}") from None


def fingerprint(source) -> str | None:
    """A hash that changes when the rows can, for the cache key; None when there is none to be had."""
    if is_local(source.hf):
        root = Path(source.hf).expanduser()
        h = hashlib.sha256()
        for f in sorted(p for p in ([root] if root.is_file() else root.rglob("*")) if p.is_file()):
            h.update(str(f.relative_to(root) if f != root else f.name).encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        return h.hexdigest()
    if source.streaming:
        return None
    return _load(source, streaming=False)._fingerprint


def _rows(source):
    return iter(_load(source, streaming=source.streaming))


def _load(source, *, streaming: bool):
    if importlib.util.find_spec("datasets") is None:
        raise DataError(f"{label(source)}: {DATASETS_MISSING}")
    import datasets

    name = label(source)
    path = Path(source.hf).expanduser()
    try:
        if path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file()):
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                if source.split not in ds:
                    raise DataError(f"{name}: no split {source.split!r}; the folder has {', '.join(ds)}")
                ds = ds[source.split]
            return ds.to_iterable_dataset() if streaming else ds
        return datasets.load_dataset(str(path) if is_local(source.hf) else source.hf, source.subset,
                                     split=source.split, revision=source.revision, streaming=streaming)
    except DataError:
        raise
    except Exception as err:
        hint = ("" if is_local(source.hf) else
                " (with no network, a Hub dataset must already be in the datasets cache; or name a local folder)")
        raise DataError(f"{name}: cannot load with datasets: {type(err).__name__}: {err}{hint}") from None
