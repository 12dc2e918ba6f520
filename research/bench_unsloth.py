"""Unsloth through trainhub vs Unsloth driven directly vs HF+PEFT, in one run on one GPU.

The job: a Llama-3.2-1B-shaped model (hidden 2048, intermediate 8192, 16 layers, 32 heads,
8 KV heads, vocab 128256, tied embeddings, rope theta 500000) with random weights, LoRA r=16
(alpha 32) on every linear layer, sequences of 2048 tokens, micro-batch 4, bf16, AdamW (fused),
gradient clipping at 1.0; with gradient checkpointing (Unsloth's own where Unsloth runs) and without.

Variants, each in its own process (importing unsloth patches transformers for the whole process):

    trainhub          `train --backend unsloth` on the job file (SFT conversations cut at 2048 tokens);
                      tokens/s and peak memory are read from the run's metrics.jsonl
    direct+autocast   the same Unsloth calls (from_pretrained + get_peft_model) and a hand loop:
                      forward with labels, backward, clip, AdamW step; the forward under bf16 autocast,
                      the recipe trainhub's `train.precision: bf16` means and Unsloth's own trainer runs
                      (bf16 weights, float32 adapters, autocast)
    direct            the same hand loop without autocast: Unsloth's fastest raw loop, another recipe
    hf-peft+autocast  transformers + peft, sdpa attention, the hand loop under autocast
    ... for LoRA with and without checkpointing and for QLoRA (4-bit NF4 base weights), and a GRPO
    run through trainhub.

tokens/s is the median over the steps after the warm-up; peak memory is
torch.cuda.max_memory_allocated (trainhub: the largest mem_gb of its rows). Overhead =
1 - trainhub / direct+autocast (same recipe); against `direct` too. Run on the GPU machine (see
../shared/gpu/README.md):

    python research/bench_unsloth.py --out $OUT/unsloth.json
    python research/bench_unsloth.py --only lora --repeat 3 --out $OUT/unsloth.json   # trainhub and the hand
                                                                   # loop in turn, three times: the overhead's spread

"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAPE = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
         "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": True, "rope_theta": 500000.0,
         "max_position_embeddings": 2048}
SEQ, MICRO, RANK, ALPHA, LR = 2048, 4, 16, 32.0, 2e-4
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


# ----------------------------------------------------------------------------- the model folder


def make_model(folder: Path, vocab: int | None = None) -> None:
    """Random Llama-3.2-1B-shaped weights (bf16) and a BPE tokenizer trained on the shipped stories.
    `vocab`: the embedding's rows (default Llama's 128256; the tokenizer uses the first ~1.2k); 0: exactly
    the tokenizer's size, so that nothing sampled lies outside the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    from trainhub.data.tokenizer import train_bpe

    if (folder / "config.json").is_file():
        return
    texts = [json.loads(line)["text"] for line in (ROOT / "config/data/stories.jsonl").read_text().splitlines()]
    tok = train_bpe(texts, 4096, 2, template="chatml")
    rows = len(tok) if vocab == 0 else vocab or SHAPE["vocab_size"]
    config = LlamaConfig(**{**SHAPE, "vocab_size": rows}, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)


# ----------------------------------------------------------------------------- hand loops (one process each)


def hand_loop(variant: str, folder: Path, steps: int, warmup: int, qlora: bool, checkpointing: bool,
              autocast: bool) -> dict:
    import torch

    if variant == "direct":
        import unsloth  # noqa: F401  (before transformers)
        from unsloth import FastLanguageModel

        model, _tok = FastLanguageModel.from_pretrained(
            model_name=str(folder), max_seq_length=SEQ, dtype=torch.bfloat16, load_in_4bit=qlora,
            load_in_16bit=not qlora, use_exact_model_name=True, random_state=0,
            use_gradient_checkpointing="unsloth" if checkpointing else False)
        model = FastLanguageModel.get_peft_model(
            model, r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS, bias="none",
            use_gradient_checkpointing="unsloth" if checkpointing else False, random_state=0)
    else:
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16, attn_implementation="sdpa")
        model = model.cuda()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=TARGETS,
                                                 bias="none", task_type="CAUSAL_LM"))
    return timed_steps(model, steps, warmup, autocast=autocast)


def timed_steps(model, steps: int, warmup: int, batch: dict | None = None, autocast: bool = False,
                phases: bool = False) -> dict:
    """The hand loop: forward with labels, backward, clip, fused AdamW, a host sync per step; the median step.
    `batch`: model inputs (on the GPU) to use at every step instead of random ids; `autocast`: the forward
    under torch.autocast(bf16), as accelerate wraps a Trainer's model when bf16 is on; `phases`: a sync after
    the backward and after the clip too, and the median of each phase (forward+backward, clip, optimizer)."""
    import contextlib

    import torch

    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=0.0, fused=True)
    gen = torch.Generator(device="cuda").manual_seed(0)
    times, split = [], []

    def mark():
        if phases:
            torch.cuda.synchronize()
            split[-1].append(time.perf_counter())

    for step in range(warmup + steps):
        ids = torch.randint(1, 4096, (MICRO, SEQ), device="cuda", generator=gen)  # the tokenizer's id range
        inputs = batch or {"input_ids": ids, "labels": ids}
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        split.append([t0])
        with torch.autocast("cuda", dtype=torch.bfloat16) if autocast else contextlib.nullcontext():
            loss = model(**inputs, use_cache=False).loss
        loss.backward()
        mark()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        mark()
        opt.step()
        opt.zero_grad(set_to_none=True)
        last = loss.item()  # sync
        times.append(time.perf_counter() - t0)
        split[-1].append(time.perf_counter())
        if step == 0:
            torch.cuda.reset_peak_memory_stats()  # weights stay counted; the first step's one-offs do not
    step_s = statistics.median(times[warmup:])
    phase = {f"{name}_s": statistics.median(t[i + 1] - t[i] for t in split[warmup:])
             for i, name in enumerate(("fwd_bwd", "clip", "optim"))} if phases else {}
    return {**phase, "tokens_per_s": MICRO * SEQ / step_s, "step_s": step_s, "peak_gb": torch.cuda.max_memory_allocated() / 1e9,
            "final_loss": last, "steps": steps, "warmup": warmup}


# ----------------------------------------------------------------------------- through trainhub


def make_chats(path: Path, n: int) -> None:
    """n conversations, each a short question and an answer of stories joined to ~3x2048 tokens: cut to
    data.max_length (overlong: truncate), every row is exactly 2048 tokens, as in the hand loops."""
    stories = [json.loads(line)["text"] for line in (ROOT / "config/data/stories.jsonl").read_text().splitlines()]
    with open(path, "w") as f:
        at = 0
        for i in range(n):
            answer = []
            while sum(map(len, answer)) < 24_000:
                answer.append(stories[at % len(stories)])
                at += 1
            f.write(json.dumps({"messages": [{"role": "user", "content": f"Tell me story {i}."},
                                             {"role": "assistant", "content": "\n\n".join(answer)}]}) + "\n")


def bench_job(folder: Path, data: Path, run_dir: Path, steps: int, adapter: str, checkpointing: bool = True,
              log_every: int = 1) -> dict:
    return {
        "name": f"bench-unsloth-{adapter}-{'ckpt' if checkpointing else 'nockpt'}", "output_dir": str(run_dir), "seed": 0, "backend": "unsloth",
        "model": {"path": str(folder), "dtype": "bfloat16"},
        "method": "sft",
        "adapter": {"type": adapter, "rank": RANK, "alpha": ALPHA, "dropout": 0.0, "targets": TARGETS},
        "data": {"train": str(data), "format": "messages", "max_length": SEQ, "overlong": "truncate"},
        "optim": {"type": "adamw", "lr": LR, "betas": [0.9, 0.999], "weight_decay": 0.0}, "schedule": {"warmup_steps": 0, "decay": "constant"},
        "train": {"micro_batch_size": MICRO, "max_steps": steps, "precision": "bf16",
                  "grad_checkpointing": checkpointing, "grad_clip": 1.0, "log_every": log_every,
                  "on_nonfinite": "stop"},
        "export": {"merged": False},
        "log": {"console": "plain"},
    }


def grpo_job(folder: Path, run_dir: Path, steps: int = 8) -> dict:
    """GRPO (dapo) on the shipped arithmetic prompts: 2 prompts x 8 completions of up to 128 tokens per step."""
    return {
        "name": "bench-unsloth-grpo", "output_dir": str(run_dir), "seed": 0, "backend": "unsloth",
        "model": {"path": str(folder), "dtype": "bfloat16"},
        "method": {"type": "grpo", "algorithm": "dapo", "group_size": 8, "max_new_tokens": 128, "kl_beta": 0.0,
                   "rewards": [{"function": "trainhub.rewards:exact_match"},
                               {"function": "trainhub.rewards:answer_format", "weight": 0.2}]},
        "adapter": {"type": "lora", "rank": RANK, "alpha": ALPHA, "targets": TARGETS},
        "data": {"train": str(ROOT / "config/data/arithmetic.jsonl"), "format": "prompt", "max_length": 96,
                 "overlong": "drop"},
        "optim": {"type": "adamw", "lr": 1e-5}, "schedule": {"warmup_steps": 0, "decay": "constant"},
        "train": {"micro_batch_size": 16, "max_steps": steps, "precision": "bf16", "grad_checkpointing": True,
                  "log_every": 1, "on_nonfinite": "stop"},
        "export": {"merged": False},
        "log": {"console": "plain"},
    }


def through_trainhub(job: dict, tmp: Path, warmup: int) -> dict:
    import yaml

    path = tmp / f"{job['name']}.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    # an earlier bench's run in the same --tmp (a warm machine keeps /tmp) would make train refuse the folder
    shutil.rmtree(job["output_dir"], ignore_errors=True)
    t0 = time.time()
    done = subprocess.run([sys.executable, "-m", "trainhub", "train", "--config", str(path)], cwd=ROOT,
                          capture_output=True, text=True)
    wall = time.time() - t0
    log = Path(job["output_dir"]) / "metrics.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
    train = [r for r in rows if r["event"] == "train"]
    if done.returncode != 0 or not train:
        return {"error": f"exit {done.returncode}", "tail": (done.stdout + done.stderr)[-3000:]}
    start = next(r for r in rows if r["event"] == "start")
    pairs = window_pairs(train, warmup) or list(zip(train, train[1:], strict=False))
    windows = seconds_per_step(pairs)
    measured = [b for _a, b in pairs] or train
    console = (Path(job["output_dir"]) / "console.log").read_text()
    return {"tokens_per_s": statistics.median(r["tokens_per_s"] for r in measured),
            "tokens_per_step": statistics.median((b["tokens"] - a["tokens"]) / (b["step"] - a["step"])
                                                 for a, b in pairs) if pairs else None,
            "step_s": statistics.median(windows) if windows else None,
            "windows_s": [round(w, 4) for w in windows],
            "method": train[-1].get("method"), "console_tail": console[-1500:],
            "peak_gb": max(r["mem_gb"] or 0 for r in train), "final_loss": train[-1]["loss"],
            "mfu": statistics.median(r["mfu"] for r in measured) if measured[0]["mfu"] is not None else None,
            "steps": len(train), "warmup": warmup, "wall_s": round(wall, 1), "notes": start.get("notes", [])}


def window_pairs(train: list[dict], warmup: int) -> list[tuple[dict, dict]]:
    """Consecutive train rows whose window (the steps since the row before) lies past the warmup steps;
    log_every > 1 gives one row per window. The last window is left out: an unsloth SFT row is written one
    step late (hf/deferred.py) but the last step's at once, right after the row before it, so that
    window holds ~10 ms and no step (its median pulled every reading before 2026-12-04 down a little)."""
    pairs = [(a, b) for a, b in zip(train, train[1:], strict=False) if a["step"] >= warmup]
    return pairs[:-1] if len(pairs) > 1 else pairs


def seconds_per_step(pairs: list[tuple[dict, dict]]) -> list[float]:
    """Each window's wall time per step, from the rows' times."""
    return [(b["time"] - a["time"]) / (b["step"] - a["step"]) for a, b in pairs]


def median_interval(xs: list[float], level: float = 0.95) -> tuple[float, float, float] | None:
    """A distribution-free confidence interval for the median of `xs` (the sign test's): the k-th
    smallest and k-th largest values, with the largest k whose coverage, 1 - 2 P(Binomial(n, 1/2) < k),
    is at least `level`; (low, high, coverage), or None when n is too small for any (n < 6 at 0.95).
    It assumes only that the pairs are independent draws from one distribution: what alternating pairs
    on a host whose speed drifts give, and what a mean and standard deviation would not describe."""
    from math import comb

    n, ordered = len(xs), sorted(xs)
    best = None
    for k in range(1, n // 2 + 1):
        coverage = 1 - 2 * sum(comb(n, i) for i in range(k)) / 2 ** n
        if coverage < level:
            break
        best = (ordered[k - 1], ordered[n - k], coverage)
    return best


def host_ns(n: int = 1_000_000) -> float:
    """Nanoseconds per iteration of a plain Python loop in this process, now: the GPU host's speed changes
    with what its other vCPUs do (probe_host.py), and a host-bound step follows it. Taken before each run,
    so a pair whose two runs met different host speeds can be told apart."""
    t0, total = time.perf_counter(), 0
    for i in range(n):
        total += i
    return round(1e9 * (time.perf_counter() - t0) / n, 1)


def probed(run, *args) -> dict:
    """`run(*args)`, its result with the host's speed just before (host_ns)."""
    ns = host_ns()
    return {**run(*args), "host_ns_before": ns}


def run_variant(args, variant: str, qlora: bool, checkpointing: bool, autocast: bool) -> dict:
    out = Path(args.tmp) / f"{variant}-{int(qlora)}-{int(checkpointing)}-{int(autocast)}.json"
    cmd = [sys.executable, __file__, "--variant", variant, "--model", str(args.model), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--result", str(out)] + (["--qlora"] if qlora else []) + \
          ([] if checkpointing else ["--no-checkpointing"]) + (["--autocast"] if autocast else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}", "tail": (done.stdout + done.stderr)[-3000:]}
    return json.loads(out.read_text())


# group -> (adapter, checkpointing, hand loops as (name, variant, autocast))
GROUPS = {
    "lora": ("lora", True, [("direct+autocast", "direct", True), ("direct", "direct", False),
                            ("hf-peft+autocast", "hf-peft", True)]),
    "lora-nockpt": ("lora", False, [("direct+autocast", "direct", True), ("direct", "direct", False),
                                    ("hf-peft+autocast", "hf-peft", True)]),
    "qlora": ("qlora", True, [("direct+autocast", "direct", True), ("direct", "direct", False)]),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "research/results/unsloth.json")
    parser.add_argument("--tmp", type=Path, default=Path("/tmp/bench_unsloth"))
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--variant", choices=["direct", "hf-peft"], default=None)
    parser.add_argument("--qlora", action="store_true")
    parser.add_argument("--no-checkpointing", action="store_true")
    parser.add_argument("--autocast", action="store_true")
    parser.add_argument("--result", type=Path, default=None)
    parser.add_argument("--only", default=",".join([*GROUPS, "grpo"]), help="which groups to run")
    parser.add_argument("--peers", default=None,
                        help="hand loops to run beside trainhub (default: all of the group's; direct+autocast "
                             "always runs, the overhead is measured against it)")
    parser.add_argument("--log-every", type=int, default=1, help="train.log_every of trainhub's jobs")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run trainhub and the same-recipe hand loop this many times in turn (LoRA/QLoRA groups)")
    args = parser.parse_args()
    if args.variant:  # a child: one hand loop
        result = hand_loop(args.variant, args.model, args.steps, args.warmup, args.qlora, not args.no_checkpointing,
                           args.autocast)
        args.result.write_text(json.dumps(result))
        return

    import torch

    from trainhub import envs

    args.tmp.mkdir(parents=True, exist_ok=True)
    if envs.python_of("unsloth") is None:  # the GPU machine: adopt this interpreter (wheels on PYTHONPATH)
        envs.setup("unsloth", python=sys.executable)
    args.model = args.model or args.tmp / "llama-1b-shape"
    make_model(args.model)
    chats = args.tmp / "chats.jsonl"
    make_chats(chats, (args.warmup + args.steps) * MICRO + 8)
    results: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "shape": SHAPE,
                     "log_every": args.log_every,
                     "job": {"seq": SEQ, "micro_batch": MICRO, "rank": RANK, "alpha": ALPHA, "lr": LR},
                     "date": time.strftime("%Y-%m-%d", time.gmtime())}
    steps = args.warmup + args.steps
    for group in args.only.split(","):
        if group == "grpo":
            # sampling from more logits than the tokenizer has tokens (128256, then 4096, against ~1.2k) ended
            # in a device-side assert in the embedding under Unsloth (2026-11-22); GRPO's model has exactly
            # the tokenizer's vocabulary, the 1B shape otherwise
            grpo_model = args.tmp / "llama-1b-shape-vocab-tok"
            make_model(grpo_model, vocab=0)
            results["grpo"] = {"trainhub": through_trainhub(grpo_job(grpo_model, args.tmp / "run-grpo"), args.tmp, 1)}
            continue
        adapter, checkpointing, hands = GROUPS[group]
        job = bench_job(args.model, chats, args.tmp / f"run-{group}", steps, adapter, checkpointing, args.log_every)
        row = results[group] = {"trainhub": probed(through_trainhub, job, args.tmp, args.warmup)}
        print(f"{group}: trainhub {row['trainhub'].get('tokens_per_s')}", flush=True)
        wanted = {"direct+autocast", *args.peers.split(",")} if args.peers else None
        for name, variant, autocast in hands:
            if wanted is not None and name not in wanted:
                continue
            row[name] = probed(run_variant, args, variant, adapter == "qlora", checkpointing, autocast)
        for peer in ("direct+autocast", "direct"):
            if "tokens_per_s" in row["trainhub"] and "tokens_per_s" in row.get(peer, {}):
                row[f"overhead_vs_{peer}_pct"] = 100 * (1 - row["trainhub"]["tokens_per_s"] / row[peer]["tokens_per_s"])
        for i in range(1, args.repeat):  # the pair again, alternating: machines drift by more than the few % sought
            again = {"trainhub": probed(through_trainhub, {**job, "output_dir": f"{job['output_dir']}-{i}"}, args.tmp,
                                        args.warmup),
                     "direct+autocast": probed(run_variant, args, "direct", adapter == "qlora", checkpointing, True)}
            row.setdefault("repeats", []).append({**{k: v.get("tokens_per_s") for k, v in again.items()},
                                                  "host_ns": [v.get("host_ns_before") for v in again.values()]})
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1))  # a run cut short keeps the pairs it has
        pairs = [(row["trainhub"].get("tokens_per_s"), row["direct+autocast"].get("tokens_per_s")),
                 *((r["trainhub"], r["direct+autocast"]) for r in row.get("repeats", []))]
        if len(pairs) > 1 and all(a and b for a, b in pairs):
            row["overhead_pairs_pct"] = [100 * (1 - a / b) for a, b in pairs]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1))  # a group at a time: a run cut short keeps what it has
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    print_table(results)


def print_table(results: dict) -> None:
    print(f"\n{results['device']}  torch {results['torch']}")
    print(f"{'group':12} {'variant':18} {'tok/s':>10} {'peak GB':>8}")
    for group in [*GROUPS, "grpo"]:
        for name, r in results.get(group, {}).items():
            if not isinstance(r, dict):
                continue
            if "error" in r:
                print(f"{group:12} {name:18} error: {r['error']}\n{r['tail']}")
                continue
            print(f"{group:12} {name:18} {r['tokens_per_s']:>10.0f} {r['peak_gb']:>8.2f}")
        if "overhead_pairs_pct" in results.get(group, {}):
            pairs = results[group]["overhead_pairs_pct"]
            ci = median_interval(pairs)
            within = f"; the median within {ci[0]:.1f}..{ci[1]:.1f}% at {100 * ci[2]:.0f}%" if ci else ""
            print(f"{group:12} overhead over direct+autocast, pair by pair: {', '.join(f'{x:.1f}%' for x in pairs)} "
                  f"(median {statistics.median(pairs):.1f}%{within})")
            row = results[group]
            ns = [(row["trainhub"].get("host_ns_before"), row["direct+autocast"].get("host_ns_before")),
                  *(tuple(r.get("host_ns", (None, None))) for r in row.get("repeats", []))]
            print(f"{group:12} host ns per Python loop before each run (trainhub, hand), pair by pair: "
                  f"{', '.join(f'{a}/{b}' for a, b in ns)}")
        for peer in ("direct+autocast", "direct"):
            if f"overhead_vs_{peer}_pct" in results.get(group, {}):
                print(f"{group:12} trainhub's overhead over Unsloth {peer} (hand loop): "
                      f"{results[group][f'overhead_vs_{peer}_pct']:.1f}%")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    main()
