#!/usr/bin/env python3
"""Build the English-text corpus of the ~125M quality benchmarks (bench_optim_quality.py, bench_fp8_drift.py) from a
Debian package, so it can be obtained where only the package registries are reachable and then carried to a
machine with no network at all.

Source: Debian's `python3.11-doc`, the Python 3.11 documentation, whose reStructuredText sources (`_sources/
**/*.rst.txt`, ~12 MB, ~1.4 M words) are English prose about Python with code examples. License: the PSF License
Agreement (permissive), as the package's copyright file says. The script keeps prose and code as written, drops
reST directive lines and section underlines, turns roles like :func:`len` into `len`, cuts each page into
records of at most --chars characters at paragraph boundaries, and puts every 20th page into the eval split.
It writes DIR/train.jsonl, DIR/eval.jsonl ({"text": ...} per line) and DIR/SOURCE.md (package, version, the
.deb's sha256, license, counts). DIR is git-ignored; do not commit it.

    python research/get_corpus.py                        # apt-get download, into research/data/python-docs
    python research/get_corpus.py --deb python3.11-doc_3.11.2-6+deb12u9_all.deb   # an already downloaded .deb
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "python3.11-doc"
ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
UNDERLINE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")


def clean(rst: str) -> list[str]:
    """The page's paragraphs: directive lines (and their indented option lines) and underlines dropped, roles
    reduced to their text."""
    paragraphs, current, in_directive = [], [], False
    for line in rst.splitlines():
        if line.startswith(".. "):
            in_directive = True
            continue
        if in_directive and (line.startswith("   :") or not line.strip()):
            in_directive = bool(line.strip())
            continue
        in_directive = False
        if UNDERLINE.match(line):
            continue
        if not line.strip():
            if current:
                paragraphs.append("\n".join(current))
                current = []
            continue
        current.append(ROLE.sub(r"\1", line).rstrip())
    if current:
        paragraphs.append("\n".join(current))
    return paragraphs


def records(paragraphs: list[str], chars: int) -> list[str]:
    out, current = [], ""
    for p in paragraphs:
        if current and len(current) + len(p) + 2 > chars:
            out.append(current)
            current = ""
        current = f"{current}\n\n{p}" if current else p[:chars]
    if current:
        out.append(current)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deb", type=Path, help="the .deb (default: apt-get download it)")
    parser.add_argument("--out", type=Path, default=ROOT / "research" / "data" / "python-docs")
    parser.add_argument("--chars", type=int, default=4000, help="longest record")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        deb = args.deb
        if deb is None:
            subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp, check=True, capture_output=True)
            deb = next(Path(tmp).glob(f"{PACKAGE}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), f"{tmp}/x"], check=True)
        found = Path(tmp, "x").glob("usr/share/doc/python3*/html/_sources/**/*.rst.txt")
        by_page = {str(p).split("/_sources/", 1)[1]: p for p in found}  # the docs sit under two folder names
        sources = [by_page[k] for k in sorted(by_page)]
        if not sources:
            raise SystemExit(f"{deb}: no html/_sources/**/*.rst.txt inside; is it {PACKAGE}?")
        version = deb.name.split("_")[1]
        digest = hashlib.sha256(deb.read_bytes()).hexdigest()
        args.out.mkdir(parents=True, exist_ok=True)
        counts = {"train": [0, 0], "eval": [0, 0]}
        with open(args.out / "train.jsonl", "w") as train, open(args.out / "eval.jsonl", "w") as evals:
            for i, path in enumerate(sources):
                split = "eval" if i % 20 == 0 else "train"
                for text in records(clean(path.read_text(errors="replace")), args.chars):
                    (evals if split == "eval" else train).write(json.dumps({"text": text}) + "\n")
                    counts[split][0] += 1
                    counts[split][1] += len(text.split())
    (args.out / "SOURCE.md").write_text(
        f"# Corpus: the Python 3.11 documentation's reStructuredText sources\n\n"
        f"- Debian package `{PACKAGE}` {version}, `{deb.name}`, sha256 `{digest}`\n"
        f"- License: PSF License Agreement (the package's copyright file); permissive\n"
        f"- Built by `research/get_corpus.py` from {len(sources)} pages; every 20th page is the eval split\n"
        f"- train: {counts['train'][0]:,} records, {counts['train'][1]:,} words; "
        f"eval: {counts['eval'][0]:,} records, {counts['eval'][1]:,} words\n")
    print((args.out / "SOURCE.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
