#!/usr/bin/env python3
"""GRPO (algorithm dapo) step time: through trainhub (`train --backend trl`) vs TRL's GRPOTrainer
driven directly with the same settings, in one run of this script (--repeats runs per side,
alternating which goes first).

Model: Qwen2.5-0.5B-shaped, random init (hidden 896, intermediate 4864, 24 layers, 14 heads, 2 KV
heads, vocab 151936, tied, rope theta 1e6), bf16 weights with bf16 autocast; 8 prompts x 8
generations x 256 new tokens per optimizer step (16 completions per micro-batch x 4 accumulation,
one generation call of 64 per step, HF generate). A random model almost never samples EOS, so every
completion runs to 256 tokens and both sides do the same work. The tokenizer is a small byte-level
BPE trained here (the model's larger vocabulary only widens the output layer; sampled ids the
tokenizer lacks decode to nothing, and the rewards score 0).

Both sides run as child processes, one after the other, from the same saved model folder, prompts,
seed and GRPOConfig values (the direct side's config is written out by hand, as a user would, and
checked equal to trainhub's translation of the job). Step time: wall time between consecutive
optimizer steps (trainhub: its train rows' `time`; direct: a callback's on_step_end), after
--warmup steps, median over --steps. Overhead = trainhub / direct - 1.

    PYTHONPATH=backend python research/bench_grpo_trl.py --tiny          # CPU check, < 1 min
    PYTHONPATH=/tmp/site:backend python research/bench_grpo_trl.py      # GPU: the real sizes

Prints a table last; writes $OUT/bench_grpo_trl.json when OUT is set.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REAL = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "vocab_size": 151936, "rope_theta": 1e6, "prompts": 8, "group": 8,
        "new_tokens": 256, "micro": 16, "accum": 4}
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": None, "rope_theta": 1e6, "prompts": 4, "group": 2,
        "new_tokens": 16, "micro": 4, "accum": 2}
LR = 1e-6
ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def build_model(folder: Path, size: dict, cuda: bool) -> None:
    """A random-init Qwen2 of `size` and a BPE tokenizer, saved to `folder`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from trainhub.data.sources import training_texts
    from trainhub.data.tokenizer import train_bpe
    from trainhub.job import DataSection

    tok = train_bpe(training_texts(DataSection(train=str(ROOT / "config/data/arithmetic.jsonl")), 0), 512)
    vocab = size["vocab_size"] or 2 * len(tok)  # tiny: still larger than the tokenizer, as for the real one
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=vocab, hidden_size=size["hidden_size"], intermediate_size=size["intermediate_size"],
                         num_hidden_layers=size["num_hidden_layers"], num_attention_heads=size["num_attention_heads"],
                         num_key_value_heads=size["num_key_value_heads"], rope_theta=size["rope_theta"],
                         tie_word_embeddings=True, max_position_embeddings=4096, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=None)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16 if cuda else torch.float32)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)


def write_prompts(path: Path, n: int) -> None:
    lines = (ROOT / "config/data/arithmetic.jsonl").read_text().splitlines()[:n]
    path.write_text("\n".join(lines) + "\n")


def job(folder: Path, work: Path, size: dict, steps: int, cuda: bool) -> dict:
    return {
        "name": "bench-grpo-trl", "output_dir": str(work / "run"), "seed": 0, "backend": "trl",
        "model": {"path": str(folder), "dtype": "bfloat16" if cuda else "float32", "attention": "sdpa"},
        "method": {"type": "grpo", "algorithm": "dapo", "group_size": size["group"],
                   "max_new_tokens": size["new_tokens"], "temperature": 1.0, "top_p": 1.0, "kl_beta": 0.0,
                   "rewards": [{"function": "trainhub.rewards:exact_match", "weight": 1.0},
                               {"function": "trainhub.rewards:answer_format", "weight": 0.2}]},
        "data": {"train": str(work / "prompts.jsonl"), "format": "prompt", "max_length": 128, "overlong": "drop",
                 "shuffle": True},
        "optim": {"type": "adamw", "lr": LR, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0}, "schedule": {"warmup_steps": 0, "decay": "constant"},
        "train": {"micro_batch_size": size["micro"], "grad_accum": size["accum"], "max_steps": steps,
                  "precision": "bf16" if cuda else "fp32", "grad_clip": 1.0, "log_every": 1,
                  "on_nonfinite": "stop"},
        "log": {"console": "plain"},
    }


def direct_config(out: Path, size: dict, steps: int, cuda: bool) -> dict:
    """GRPOConfig keywords for TRL driven directly, written out as a user would for the same run."""
    return {
        "output_dir": str(out), "seed": 0, "data_seed": 0, "max_steps": steps, "learning_rate": LR,
        "per_device_train_batch_size": size["micro"], "gradient_accumulation_steps": size["accum"],
        "optim": "adamw_torch_fused" if cuda else "adamw_torch", "adam_beta1": 0.9, "adam_beta2": 0.999,
        "adam_epsilon": 1e-8, "weight_decay": 0.0, "lr_scheduler_type": "constant", "warmup_steps": 0,
        "max_grad_norm": 1.0, "bf16": cuda, "fp16": False, "use_cpu": not cuda, "gradient_checkpointing": False,
        "logging_steps": 1, "save_strategy": "no", "report_to": "none", "disable_tqdm": True,
        "dataloader_drop_last": True,
        "num_generations": size["group"], "max_completion_length": size["new_tokens"], "temperature": 1.0,
        "top_p": 1.0, "top_k": 0, "beta": 0.0, "num_iterations": 1, "steps_per_generation": size["accum"],
        "reward_weights": [1.0, 0.2], "use_vllm": False, "vllm_mode": "colocate", "disable_dropout": False,
        "shuffle_dataset": True, "remove_unused_columns": False, "log_completions": False,
        "loss_type": "dapo", "importance_sampling_level": "token", "epsilon": 0.2, "epsilon_high": 0.28,
        "scale_rewards": "group", "mask_truncated_completions": True,
    }


def same_settings(job_dict: dict, direct: dict, cuda: bool) -> list[str]:
    """Keys where trainhub's translation of the job differs from the direct config (should be none)."""
    from trainhub.job import Job
    from trainhub.runners.trl.translate import translate

    ours = translate(Job.model_validate(job_dict), Path(job_dict["output_dir"]), cuda=cuda, bf16_ok=cuda)["args"]
    # what trainhub passes differently by design: its own optimizer/schedule objects replace these names
    by_design = {"optim", "adam_beta1", "adam_beta2", "adam_epsilon", "weight_decay", "lr_scheduler_type",
                 "warmup_steps", "output_dir"}
    return [f"{k}: trainhub {ours.get(k)!r} vs direct {v!r}" for k, v in direct.items()
            if k not in by_design and ours.get(k) != v]


def run_direct(args) -> None:
    """Child: TRL's GRPOTrainer on the saved model, the same prompts and rewards; step times to a JSON file."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from trainhub.rewards import answer_format, exact_match

    spec = json.loads(Path(args.direct).read_text())
    cuda = torch.cuda.is_available()
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(spec["model"])
    model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.bfloat16 if cuda else torch.float32,
                                                 attn_implementation="sdpa")
    rows = [json.loads(line) for line in Path(spec["prompts"]).read_text().splitlines() if line]
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": r["prompt"]}], "answer": r["answer"]}
                              for r in rows])
    times, lengths = [], []

    class Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            if cuda:
                torch.cuda.synchronize()
            times.append(time.time())

        def on_log(self, a, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                lengths.append(logs["completions/mean_length"])

    trainer = GRPOTrainer(model=model, reward_funcs=[exact_match, answer_format], args=GRPOConfig(**spec["config"]),
                          train_dataset=data, processing_class=tok, callbacks=[Clock()])
    t0 = time.time()
    trainer.train()
    Path(spec["result"]).write_text(json.dumps({"t0": t0, "times": times, "lengths": lengths}))


def summarise(name: str, runs: list[list[float]], lengths: list[list[float]], warmup: int, completions: int) -> dict:
    """Median step time over every run's steps after the warm-up; completion tokens/s from the mean length."""
    steps = [b - a for stamps in runs for a, b in zip(stamps[warmup:], stamps[warmup + 1:], strict=False)]
    timed = [x for run in lengths for x in run[warmup + 1:]] or [x for run in lengths for x in run]
    s, length = statistics.median(steps), statistics.mean(timed)
    return {"name": name, "s_per_step": s, "step_times": steps, "mean_completion_len": length,
            "completion_tokens_per_s": completions * length / s}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tiny", action="store_true", help="tiny model and batch, for a CPU check")
    parser.add_argument("--steps", type=int, default=None, help="timed steps (default 5; tiny 2)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed first steps (default 2; tiny 1)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per side, alternating which goes first "
                        "(default 2; tiny 1)")
    parser.add_argument("--direct", help=argparse.SUPPRESS)  # child mode
    args = parser.parse_args()
    if args.direct:
        run_direct(args)
        return 0
    import torch

    cuda = torch.cuda.is_available()
    size = TINY if args.tiny else REAL
    timed, warmup = args.steps or (2 if args.tiny else 5), args.warmup if args.warmup is not None else (
        1 if args.tiny else 2)
    args.repeats = args.repeats or (1 if args.tiny else 2)
    total = warmup + timed + 1  # + 1: the first step has no previous boundary
    completions = size["prompts"] * size["group"]
    env = {**os.environ, **ENV, "PYTHONPATH": os.pathsep.join(
        [str(ROOT / "backend"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = work / "model"
        build_model(folder, size, cuda)
        write_prompts(work / "prompts.jsonl", size["prompts"] * total)
        job_dict = job(folder, work, size, total, cuda)
        direct = direct_config(work / "direct", size, total, cuda)
        mismatch = same_settings(job_dict, direct, cuda)
        if mismatch:
            print("settings differ:\n  " + "\n  ".join(mismatch))
            return 1
        import yaml

        (work / "job.yaml").write_text(yaml.safe_dump(job_dict, sort_keys=False))
        spec = {"model": str(folder), "prompts": str(work / "prompts.jsonl"), "config": direct,
                "result": str(work / "direct.json")}
        (work / "direct_spec.json").write_text(json.dumps(spec))

        stamps: dict[str, list] = {"trl direct": [], "trainhub trl": []}
        lengths: dict[str, list] = {"trl direct": [], "trainhub trl": []}
        for r in range(args.repeats):  # alternate which side goes first, so drift hits both alike
            for side in (("direct", "hub") if r % 2 == 0 else ("hub", "direct")):
                if side == "direct":
                    done = subprocess.run([sys.executable, __file__, "--direct", str(work / "direct_spec.json")],
                                          env=env)
                    if done.returncode:
                        return done.returncode
                    res = json.loads((work / "direct.json").read_text())
                    stamps["trl direct"].append(res["times"])
                    lengths["trl direct"].append(res["lengths"])
                else:
                    shutil.rmtree(work / "run", ignore_errors=True)
                    done = subprocess.run([sys.executable, "-m", "trainhub", "train", "--config",
                                           str(work / "job.yaml")], env=env, cwd=ROOT)
                    if done.returncode:
                        return done.returncode
                    rows = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines()]
                    train = [row for row in rows if row["event"] == "train"]
                    stamps["trainhub trl"].append([row["time"] for row in train])
                    lengths["trainhub trl"].append([row["method"]["completion_length"] for row in train])
        direct_row, hub_row = (summarise(name, stamps[name], lengths[name], warmup, completions)
                               for name in ("trl direct", "trainhub trl"))

    overhead = hub_row["s_per_step"] / direct_row["s_per_step"] - 1
    device = torch.cuda.get_device_name() if cuda else "cpu"
    import transformers
    import trl

    result = {"device": device, "tiny": args.tiny, "size": size, "warmup_steps": warmup, "timed_steps": timed,
              "repeats": args.repeats,
              "completions_per_step": completions, "overhead": overhead, "rows": [direct_row, hub_row],
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                           "trl": trl.__version__}}
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "bench_grpo_trl.json").write_text(json.dumps(result, indent=1))
    print(f"\nGRPO dapo, {size['prompts']} prompts x {size['group']} generations x {size['new_tokens']} new tokens, "
          f"{device}, median of {args.repeats} x {timed} steps after {warmup} warm-up each")
    print(f"{'':<14} {'s/step':>8} {'compl tok/s':>12} {'mean len':>9} {'overhead':>9}")
    for row, ov in ((direct_row, ""), (hub_row, f"{100 * overhead:+.1f}%")):
        print(f"{row['name']:<14} {row['s_per_step']:>8.3f} {row['completion_tokens_per_s']:>12.0f} "
              f"{row['mean_completion_len']:>9.1f} {ov:>9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
