"""Host time a transformers Trainer step adds over a hand loop, on the CPU, with a model so small that
the ops cost almost nothing: what is left is Python around them. Runs anywhere (no GPU):

    python research/trainer_host_overhead.py [--steps 300] [--lora-layers 16] [--profile 25]

Both loops train the same tiny Llama on the same pre-tokenized rows with trainhub's PadCollator,
AdamW, clipping at 1.0 and a loss read every step (the Trainer logs every step). The Trainer runs twice, as
it comes and with trainhub's skip_module_walks (hf/flops.py). Prints the median milliseconds
per step of each and, with --profile N, the N functions with the most own time in the
Trainer run (cProfile) and who walks the model's modules.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time

import torch


def tiny_model(lora_layers: int = 0):
    """2 plain layers; or `lora_layers` layers with LoRA on all seven linears of each, the module count
    of the 1B benchmark shape at 16 (1,337 modules, 371 parameters), with widths that cost nothing."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=lora_layers or 2, num_attention_heads=2,
                                         num_key_value_heads=1 if lora_layers else 2, max_position_embeddings=32))
    if not lora_layers:
        return model
    from peft import LoraConfig, get_peft_model

    return get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))


def median_ms(stamps: list[float], skip: int) -> float:
    return 1e3 * statistics.median(b - a for a, b in zip(stamps[skip:], stamps[skip + 1:], strict=False))


def main() -> None:
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback

    from trainhub.hf.flops import skip_module_walks
    from trainhub.runners.trl.data import PadCollator

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--profile", type=int, default=0, help="show the N functions with the most own time")
    parser.add_argument("--lora-layers", type=int, default=0,
                        help="LoRA on a model of this many layers (16: the 1B shape's module count)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = [{"input_ids": torch.randint(1, 64, (16,)).tolist()} for _ in range(4 * args.steps + 8)]
    for r in rows:
        r["labels"] = list(r["input_ids"])
    skip = min(50, args.steps // 4)

    class Stamps(TrainerCallback):
        def __init__(self):
            self.t: list[float] = []

        def on_step_begin(self, *a, **k):
            self.t.append(time.perf_counter())

    def trainer_ms(trim: bool) -> tuple[float, cProfile.Profile]:
        stamps = Stamps()
        config = TrainingArguments(output_dir="/tmp/trainer_host_overhead", max_steps=args.steps,
                                   per_device_train_batch_size=4, logging_steps=1, save_strategy="no", report_to=[],
                                   use_cpu=True, disable_tqdm=True, include_num_input_tokens_seen="no",
                                   logging_nan_inf_filter=False, max_grad_norm=1.0, dataloader_drop_last=True)
        trainer = Trainer(model=tiny_model(args.lora_layers), args=config, train_dataset=rows,
                          data_collator=PadCollator(0), callbacks=[stamps])
        trainer.remove_callback(PrinterCallback)
        if trim:
            skip_module_walks(trainer)
        profile = cProfile.Profile()  # only when asked: it slows every Python call, and so the walks
        if args.profile and not trim:
            profile.enable()
        trainer.train()
        profile.disable()
        return median_ms(stamps.t, skip), profile

    plain_ms, profile = trainer_ms(trim=False)
    trimmed_ms, _ = trainer_ms(trim=True)
    model, collate = tiny_model(args.lora_layers), PadCollator(0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-5)
    hand: list[float] = []
    for i in range(args.steps):
        hand.append(time.perf_counter())
        loss = model(**collate(rows[4 * i:4 * i + 4])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(opt.param_groups[0]["params"], 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
    hand_ms = median_ms(hand, skip)
    if args.profile:
        out = io.StringIO()
        stats = pstats.Stats(profile, stream=out).sort_stats("tottime")
        stats.print_stats(args.profile)
        stats.print_callers("named_modules")
        print(out.getvalue())
    print(f"lora_layers {args.lora_layers}: Trainer {plain_ms:.2f} ms/step, with skip_module_walks "
          f"{trimmed_ms:.2f}, hand loop {hand_ms:.2f}: the Trainer adds {plain_ms - hand_ms:.2f} ms of host "
          f"time per step, {trimmed_ms - hand_ms:.2f} with skip_module_walks")


if __name__ == "__main__":
    main()
