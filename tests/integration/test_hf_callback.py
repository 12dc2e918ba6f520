"""The shared Trainer callback (hf/callback.py) on a plain transformers Trainer: the rows it
writes validate against the metric schema and say what the Trainer did (TRL's method keys:
tests/unit/test_hf_method_stats.py). No TRL here: the callback must work without it."""

from __future__ import annotations

import math

import torch

from trainhub.hf.callback import MetricsCallback, start_fields
from trainhub.metrics import read_rows
from trainhub.metrics.log import MetricLog


class _Stop:
    requested = False


def _job():
    from trainhub.job import Job

    return Job.model_validate({"name": "cb", "model": {"path": "/x"}, "method": "pretrain",
                               "data": {"train": "/x.jsonl", "format": "text", "max_length": 16},
                               "train": {"micro_batch_size": 4, "max_steps": 3}})


def _trainer(tmp_path, callback, max_steps=3, logging_steps=2, save_steps=None, tokens_seen="non_padding"):
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, max_position_embeddings=32))
    rows = [{"input_ids": torch.randint(1, 64, (16,)), "attention_mask": torch.ones(16, dtype=torch.long)}
            for _ in range(16)]
    for r in rows:
        r["labels"] = r["input_ids"].clone()
    args = TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=max_steps, per_device_train_batch_size=4,
                             logging_steps=logging_steps, save_strategy="steps" if save_steps else "no",
                             save_steps=save_steps or 500, report_to=[], use_cpu=True, bf16=False,
                             include_num_input_tokens_seen=tokens_seen, disable_tqdm=True,
                             logging_nan_inf_filter=False)  # as trainhub's Trainer children set it
    return Trainer(model=model, args=args, train_dataset=rows, callbacks=[callback])


def test_rows_from_a_plain_trainer(tmp_path):
    log = MetricLog(tmp_path / "metrics.jsonl")
    fields = start_fields(backend="test", job=_job(), precision="fp32", tokens_per_step=64, notes=["n"])
    cb = MetricsCallback(log, "r1", start_fields=fields, seq_len=16)
    _trainer(tmp_path, cb, max_steps=3, logging_steps=2, save_steps=3).train()
    cb.end("completed")
    log.close()
    rows = read_rows(tmp_path / "metrics.jsonl")
    assert [r.event for r in rows] == ["start", "train", "train", "checkpoint", "end"]
    start, first, last = rows[0], rows[1], rows[2]
    assert (start.backend, start.max_steps, start.notes, start.step) == ("test", 3, ["n"], 0)
    assert start.params_trainable == start.params_total > 0 and start.flops_per_token > 6 * 1000
    assert [first.step, last.step] == [2, 3]  # logging_steps=2, and the last step is logged anyway
    assert first.tokens == 2 * 4 * 16 and last.tokens == 3 * 4 * 16  # non-padding tokens, cumulative
    for r in (first, last):
        assert math.isfinite(r.loss) and math.isfinite(r.grad_norm) and r.tokens_per_s > 0 and r.lr > 0
        assert r.mfu is None and r.method is None  # CPU: no peak; plain LM: no method stats
    assert rows[3].path.endswith("checkpoint-3")
    assert rows[4].status == "completed" and rows[4].tokens == last.tokens and rows[4].final_loss == last.loss


def test_stop_request_saves_and_stops(tmp_path):
    log = MetricLog(tmp_path / "metrics.jsonl")
    stop = _Stop()
    stop.requested = True
    cb = MetricsCallback(log, "r2", start_fields=start_fields(backend="t", job=_job(), precision="fp32",
                                                              tokens_per_step=64), seq_len=16, stop=stop)
    _trainer(tmp_path, cb, max_steps=50, logging_steps=10).train()
    cb.end("interrupted")
    log.close()
    rows = read_rows(tmp_path / "metrics.jsonl")
    assert [r.event for r in rows] == ["start", "train", "checkpoint", "end"]
    assert rows[1].step == 1 and rows[2].path.endswith("checkpoint-1") and rows[3].status == "interrupted"


def test_a_resumed_trainer_child_goes_on_from_the_checkpoints_tokens(tmp_path):
    """runners/trl/trainer.py metrics_callback, which both Trainer children (trl, unsloth) build their callback with:
    on --resume the rows' token count goes on from the checkpoint's, though the collator counts from 0 again."""
    from types import SimpleNamespace

    from trainhub.hf.callback import mark_checkpoint
    from trainhub.runners.trl.trainer import metrics_callback

    job = _job()
    checkpoint = tmp_path / "checkpoints" / "checkpoint-4"
    checkpoint.mkdir(parents=True)
    mark_checkpoint(checkpoint, 4, job.model_dump(mode="json"), tokens=1234)
    data = SimpleNamespace(eval_tokens=0, stats={"examples": 16})
    log = MetricLog(tmp_path / "metrics.jsonl")
    fresh = metrics_callback(job, log, "r", backend="unsloth", precision="bf16 (unsloth)", notes=[], data=data,
                             stop=_Stop(), resume=None)
    resumed = metrics_callback(job, log, "r", backend="unsloth", precision="bf16 (unsloth)", notes=[], data=data,
                               stop=_Stop(), resume=checkpoint)
    assert fresh.resumed_tokens == 0 and fresh.start_fields["resumed_from"] is None
    assert resumed.resumed_tokens == 1234 and resumed.start_fields["resumed_from"] == str(checkpoint)
    assert resumed.start_fields["backend"] == "unsloth" and resumed.start_fields["tokens_per_step"] == 4 * 16
    _trainer(tmp_path, resumed, max_steps=2, logging_steps=1).train()  # its count starts at 0: 64 tokens a step
    log.close()
    tokens = [r.tokens for r in read_rows(tmp_path / "metrics.jsonl") if r.event == "train"]
    assert tokens == [1234 + 64, 1234 + 128]
