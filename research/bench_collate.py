"""Host time to fetch and collate one SFT micro-batch of pre-tokenized rows, per collator.

With a log every step the Trainer synchronizes at the step's end, so the next batch's fetch and
collation run while the GPU waits: this is time added to every step of `train --backend unsloth`
(and trl). The rows are the unsloth benchmark's: 4 x 2048 tokens, {input_ids, labels} as Python
lists in a datasets.Dataset, as runners/trl/data.py builds them. CPU only; run it anywhere:

    python research/bench_collate.py [--rows 4] [--seq 2048]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--seq", type=int, default=2048)
    parser.add_argument("--batches", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import datasets
    import numpy as np
    import torch
    from transformers import DataCollatorForSeq2Seq

    from trainhub.data.tokenizer import train_bpe
    from trainhub.runners.trl.data import PadCollator

    torch.set_num_threads(1)
    texts = [json.loads(line)["text"] for line in (ROOT / "config/data/stories.jsonl").read_text().splitlines()[:300]]
    tok = train_bpe(texts, 1000, 2, template="chatml")
    rng = np.random.default_rng(0)
    n = args.rows * args.batches
    ids = rng.integers(1, len(tok), (n, args.seq)).tolist()
    labels = [[-100] * 16 + row[16:] for row in ids]
    data = datasets.Dataset.from_dict({"input_ids": ids, "labels": labels})
    collators = {"transformers DataCollatorForSeq2Seq (Unsloth's pick)": DataCollatorForSeq2Seq(tok, padding=True),
                 "trainhub PadCollator": PadCollator(tok.pad_token_id),
                 "fetch only (no collation)": lambda features: features}
    try:
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        collators["TRL DataCollatorForLanguageModeling (trl's default)"] = DataCollatorForLanguageModeling(
            pad_token_id=tok.pad_token_id)
    except ImportError:
        pass
    results = {}
    for name, collate in collators.items():
        loader = torch.utils.data.DataLoader(data, batch_size=args.rows, collate_fn=collate, shuffle=True)
        times, t = [], time.perf_counter()
        for _ in loader:
            now = time.perf_counter()
            times.append(now - t)
            t = now
        results[name] = 1000 * statistics.median(times[3:])
    print(f"{platform.processor() or platform.machine()}, {args.rows} rows x {args.seq} tokens, "
          f"median of {args.batches - 3} batches, one thread")
    print(f"{'collator':55} {'ms / batch':>10}")
    for name, ms in results.items():
        print(f"{name:55} {ms:>10.2f}")
    if args.out:
        args.out.write_text(json.dumps({"rows": args.rows, "seq": args.seq, "ms_per_batch": results}, indent=1))


if __name__ == "__main__":
    main()
