"""runners/trl (trainer.py, data.py) and hf/ helpers, which both Trainer children (trl, unsloth) use, on a real transformers Trainer
on the CPU: the trained tokens are counted where the batches are padded in worker processes, and skipping
the Trainer's module walks changes no logged value."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow  # a real transformers Trainer trains, with dataloader worker processes


def test_trained_tokens_are_counted_in_the_main_process(tmp_path):
    """count_trained_tokens counts what a real Trainer trains on while the batches are padded in dataloader
    worker processes (as on a GPU): every training micro-batch's real tokens, and no evaluation batch's."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    from trainhub.hf.tokens import count_trained_tokens
    from trainhub.runners.trl.data import PadCollator

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=2))
    lengths = [3, 7, 5, 9, 4, 6, 8, 2]  # 4 micro-batches of 2 rows: 44 real tokens, all of them trained on
    train = [{"input_ids": list(range(1, n + 1)), "labels": list(range(1, n + 1))} for n in lengths]
    held_out = [{"input_ids": [1] * 11, "labels": [1] * 11}] * 4
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, per_device_eval_batch_size=2,
                             max_steps=2, gradient_accumulation_steps=2, eval_strategy="steps", eval_steps=1,
                             use_cpu=True, report_to="none", disable_tqdm=True, save_strategy="no",
                             dataloader_num_workers=2, train_sampling_strategy="sequential")
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=held_out,
                      data_collator=PadCollator(0))
    tokens = count_trained_tokens(trainer)
    assert tokens() == 0
    trainer.train()
    assert tokens() == sum(lengths)


def test_skipping_the_module_walks_keeps_every_value(tmp_path):
    """skip_module_walks: the same losses, gradient norms and FLOPs on a LoRA model with evaluation between
    steps (which switches the model to eval mode and back), and zero_grad leaves no gradient behind."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    from trainhub.hf.flops import skip_module_walks
    from trainhub.runners.trl.data import PadCollator

    train = [{"input_ids": list(range(1, n + 1)), "labels": list(range(1, n + 1))} for n in [3, 7, 5, 9, 4, 6, 8, 2]]

    def run(trim: bool):
        torch.manual_seed(0)
        model = get_peft_model(LlamaForCausalLM(LlamaConfig(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=2)), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
        args = TrainingArguments(output_dir=str(tmp_path / str(trim)), per_device_train_batch_size=2,
                                 per_device_eval_batch_size=2, max_steps=4, gradient_accumulation_steps=2,
                                 eval_strategy="steps", eval_steps=2, logging_steps=1, learning_rate=1e-2,
                                 use_cpu=True, report_to="none", disable_tqdm=True, save_strategy="no",
                                 train_sampling_strategy="sequential")
        trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=train[:4],
                          data_collator=PadCollator(0))
        if trim:
            skip_module_walks(trainer)
        trainer.train()
        grads = [p.grad for p in model.parameters()]
        return trainer.state, grads

    (plain, _), (trimmed, grads) = run(False), run(True)
    keys = ("loss", "grad_norm", "eval_loss", "step")
    assert [{k: h.get(k) for k in keys} for h in trimmed.log_history] == \
        [{k: h.get(k) for k in keys} for h in plain.log_history]
    assert trimmed.total_flos == plain.total_flos > 0
    assert all(g is None for g in grads)  # cleared after the last step, frozen ones never set
