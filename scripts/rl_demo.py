#!/usr/bin/env python3
"""SFT, then GRPO, on the shipped arithmetic task, all on the native engine and a CPU, without network:
does GRPO raise held-out exact-match accuracy over the SFT model it starts from?

1. data: arithmetic questions drawn by scripts/make_rl_data.py's generator with another seed (the SFT
   and GRPO training set, `--train` records), with the answers as `<answer>N</answer>` replies for SFT;
   held out: the shipped config/data/arithmetic.jsonl (only questions whose text is not in the
   training set count).
2. SFT (`train --backend native`): a small Llama from nothing with its own tokenizer learns the format
   and some arithmetic.
3. GRPO (`train --backend native`, algorithm from --algorithm): from the SFT model, rewards
   trainhub.rewards:exact_match + 0.1 x answer_format, on the training questions.
4. held-out accuracy, greedy (the native sampler), of the SFT model and of the GRPO model.

    PYTHONPATH=backend python scripts/rl_demo.py --work /tmp/rl-demo          # prints both accuracies
Writes WORK/demo.json. Not yet a demonstration: with these settings GRPO does not raise held-out accuracy
(research/results/grpo_native.md has the numbers), so no test runs it; it is the starting point for one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from make_rl_data import arithmetic  # noqa: E402

MODEL = {"family": "llama", "hidden_size": 96, "intermediate_size": 256, "num_layers": 3, "num_heads": 6,
         "num_kv_heads": 2, "max_position_embeddings": 128, "tokenizer": {"type": "train", "vocab_size": 512}}


def write_data(work: Path, n: int, seed: int) -> tuple[Path, Path, Path]:
    held = [json.loads(line) for line in (ROOT / "config/data/arithmetic.jsonl").read_text().splitlines()]
    train = arithmetic(n, seed)
    seen = {r["prompt"] for r in train}
    held = [r for r in held if r["prompt"] not in seen]
    sft, prompts, heldout = work / "sft.jsonl", work / "prompts.jsonl", work / "heldout.jsonl"
    sft.write_text("".join(json.dumps({"messages": [{"role": "user", "content": r["prompt"]},
                                                    {"role": "assistant", "content": f"<answer>{r['answer']}</answer>"}]})
                           + "\n" for r in train))
    prompts.write_text("".join(json.dumps(r) + "\n" for r in train))
    heldout.write_text("".join(json.dumps(r) + "\n" for r in held))
    return sft, prompts, heldout


def run(work: Path, name: str, job: dict) -> Path:
    config = work / f"{name}.yaml"
    config.write_text(yaml.safe_dump(job, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "backend"), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "trainhub", "train", "--config", str(config)], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{name}: train exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return work / name / "final"


def accuracy(model_dir: Path, heldout: Path) -> float:
    """Greedy exact-match accuracy on the held-out questions (the native sampler, 12 new tokens)."""
    import torch

    from trainhub.data.tokenizer import load_tokenizer
    from trainhub.engine.device import Precision
    from trainhub.engine.models.own import load_hf
    from trainhub.engine.rl.rollout import Sampler, SamplingSpec
    from trainhub.rewards import exact_match

    tok = load_tokenizer(str(model_dir), False)
    model = load_hf(model_dir).eval()
    rows = [json.loads(line) for line in heldout.read_text().splitlines()]
    prompts = [tok(tok.apply_chat_template([{"role": "user", "content": r["prompt"]}], tokenize=False,
                                           add_generation_prompt=True), add_special_tokens=False)["input_ids"]
               for r in rows]
    sampler = Sampler(model, SamplingSpec(max_new_tokens=12, greedy=True), eos_ids=[tok.eos_token_id],
                      pad_id=tok.pad_token_id, device=torch.device("cpu"), precision=Precision("fp32", None, False))
    out = sampler.sample(prompts)
    texts = tok.batch_decode([c[:n] for c, n in zip(out.completion_ids.tolist(), out.lengths.tolist(), strict=True)],
                             skip_special_tokens=True)
    scores = exact_match([r["prompt"] for r in rows], texts, answer=[r["answer"] for r in rows])
    return sum(scores) / len(scores)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--train", type=int, default=2000, help="training questions")
    ap.add_argument("--sft-steps", type=int, default=600)
    ap.add_argument("--grpo-steps", type=int, default=60)
    ap.add_argument("--algorithm", default="grpo")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    sft_data, prompts, heldout = write_data(a.work, a.train, seed=11 + a.seed)
    common = {"seed": a.seed, "backend": "native", "log": {"console": "plain"}}
    sft = run(a.work, "sft", {
        "name": "sft", "output_dir": str(a.work / "sft"), **common, "model": {"init": MODEL}, "method": "sft",
        "data": {"train": str(sft_data), "format": "messages", "max_length": 64},
        "optim": {"type": "adamw", "lr": 3e-3}, "schedule": {"warmup_steps": 20, "decay": "cosine"},
        "train": {"micro_batch_size": 32, "max_steps": a.sft_steps, "precision": "fp32", "log_every": 50,
                  "save_every": None},
        "export": {"merged": True}})
    grpo = run(a.work, "grpo", {
        "name": "grpo", "output_dir": str(a.work / "grpo"), **common, "model": {"path": str(sft)},
        "method": {"type": "grpo", "algorithm": a.algorithm, "group_size": 8, "max_new_tokens": 12,
                   "rewards": [{"function": "trainhub.rewards:exact_match", "weight": 1.0},
                               {"function": "trainhub.rewards:answer_format", "weight": 0.1}]},
        "data": {"train": str(prompts), "format": "prompt", "max_length": 64, "overlong": "drop"},
        "optim": {"type": "adamw", "lr": 5e-4}, "schedule": {"warmup_steps": 5, "decay": "constant"},
        "train": {"micro_batch_size": 64, "max_steps": a.grpo_steps, "precision": "fp32", "log_every": 5,
                  "save_every": None}})
    result = {"sft_accuracy": accuracy(sft, heldout), "grpo_accuracy": accuracy(grpo, heldout),
              "heldout": len(heldout.read_text().splitlines()), "args": {k: str(v) for k, v in vars(a).items()}}
    rewards = [json.loads(line) for line in (a.work / "grpo" / "metrics.jsonl").read_text().splitlines()]
    result["grpo_reward"] = {r["step"]: r["method"]["reward_mean"] for r in rewards if r["event"] == "train"}
    (a.work / "demo.json").write_text(json.dumps(result, indent=1))
    print(f"held-out exact match ({result['heldout']} questions): SFT {result['sft_accuracy']:.3f} -> "
          f"GRPO {result['grpo_accuracy']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
