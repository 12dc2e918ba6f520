"""`trainhub data inspect`: what the model will be trained on, shown before any training.

For the first examples: the text exactly as tokenized, with the tokens that carry loss
highlighted (green, underlined) and the rest dim, and each run of trained tokens also between
OPEN and CLOSE, so the marking survives a pipe, a file or a terminal without colour; then token-length statistics, what
packing would make of the set, and every count of skipped, truncated or dropped records.
"""

from __future__ import annotations

import statistics

from rich.console import Console
from rich.table import Table
from rich.text import Text

from trainhub.data.chat import IGNORE
from trainhub.data.packing import pack_ffd, packing_stats

TRAINED, CONTEXT = "bold green underline", "dim"
OPEN, CLOSE = "[[", "]]"


def render_example(tokenizer, ids: list[int], labels: list[int]) -> Text:
    """The example's text, token by token; a token is 'trained' when the model is scored on it. Each run
    of trained tokens is styled and put between OPEN and CLOSE."""
    text = Text()
    inside = False
    for i, token in enumerate(ids):
        piece = tokenizer.decode([token], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        trained = labels[i] != IGNORE and i > 0  # the first token is never predicted
        if trained != inside:
            text.append(OPEN if trained else CLOSE, style=TRAINED)
            inside = trained
        text.append(piece, style=TRAINED if trained else CONTEXT)
    if inside:
        text.append(CLOSE, style=TRAINED)
    return text


def length_stats(lengths: list[int]) -> dict[str, float]:
    """min, median, p95 (nearest rank), max and total of the token lengths."""
    ordered = sorted(lengths)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"examples": len(ordered), "min": ordered[0], "median": statistics.median(ordered), "p95": p95,
            "max": ordered[-1], "tokens": sum(ordered)}


def show(console: Console, tokenizer, examples, max_length: int, n: int, title: str) -> None:
    """Print n rendered examples, the statistics, packing and the counts of one split."""
    console.rule(f"[bold]{title}")
    for k in range(min(n, len(examples))):
        ids, labels = examples.input_ids[k].tolist(), examples.labels[k].tolist()
        trained = sum(1 for i, x in enumerate(labels) if x != IGNORE and i > 0)
        head = Text.assemble((f"example {k}", "bold"), f": {len(ids)} tokens, {trained} trained (",
                             (f"{OPEN}trained{CLOSE}", TRAINED), ", ", ("context", CONTEXT), ")")
        console.print(head)
        console.print(render_example(tokenizer, ids, labels))
        console.print()
    lengths = [len(x) for x in examples.input_ids]
    stats = length_stats(lengths)
    stats["trained_tokens"] = sum(int((lab[1:] != IGNORE).sum()) for lab in examples.labels)
    table = Table("tokens per example", "value", show_header=True)
    for key in ("examples", "min", "median", "p95", "max", "tokens", "trained_tokens"):
        table.add_row(key, f"{stats[key]:,}" if isinstance(stats[key], int) else f"{stats[key]:,.1f}")
    rows = pack_ffd(lengths, max_length)
    packed = packing_stats(lengths, rows, max_length)
    table.add_row("packed rows", f"{len(rows):,} of {max_length} tokens")
    table.add_row("packing fill", f"{packed['fill']:.1%}")
    console.print(table)
    counts = Table("count", "value", title="records read, skipped, truncated, dropped")
    for key, value in examples.stats.items():
        counts.add_row(key, f"{value:,}")
    console.print(counts)
