"""scripts/rl_demo.py's held-out split: no held-out question reaches SFT or GRPO training, in either wording."""

from __future__ import annotations

import importlib.util
import json
import re

from tests.conftest import ROOT


def _demo():
    spec = importlib.util.spec_from_file_location("rl_demo", ROOT / "scripts" / "rl_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pair(prompt: str) -> tuple[int, int]:
    a, b = re.findall(r"\d+", prompt)[:2]
    return int(a), int(b)


def test_heldout_operand_pairs_never_reach_training(tmp_path):
    demo = _demo()
    train, held = demo.split(20, 0.2, seed=0)
    assert len(held) == 2 * round(441 * 0.2) and len(train) + len(held) == 2 * 441
    held_pairs, train_pairs = {_pair(r["prompt"]) for r in held}, {_pair(r["prompt"]) for r in train}
    assert held_pairs and not held_pairs & train_pairs  # by operand pair, so neither wording leaks
    assert all(r["answer"] == str(sum(_pair(r["prompt"]))) for r in train + held)
    sft, prompts, heldout = demo.write_data(tmp_path, train, held)
    sft_prompts = {json.loads(line)["messages"][0]["content"] for line in sft.read_text().splitlines()}
    grpo_prompts = {json.loads(line)["prompt"] for line in prompts.read_text().splitlines()}
    held_prompts = {json.loads(line)["prompt"] for line in heldout.read_text().splitlines()}
    assert not held_prompts & (sft_prompts | grpo_prompts)
    assert demo.split(20, 0.2, seed=1)[1] != held  # the seed moves the split
