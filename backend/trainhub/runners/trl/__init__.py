"""The `trl` backend: Hugging Face TRL's trainers (SFT, DPO, ORPO, KTO, GRPO family) in the main environment.

runner.py     the Runner: check, prepare, plan (the hub's side; no torch, no TRL)
translate.py  job -> TRL config (pure; the hub uses it for plan and check)
child.py      `python -m trainhub.runners.trl.child`: builds the tokenizer, model, data, rewards and
              trainer, and runs it
data.py       the data layer's records and examples -> the datasets and collators TRL's trainers take
trainer.py    what a Trainer-based child (this one and unsloth's) builds around TRL's trainer and how it
              runs and ends it
"""
