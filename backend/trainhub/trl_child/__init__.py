"""The `trl` backend's child process: `python -m trainhub.trl_child --run-dir DIR [--dry-run] [--resume CKPT]`.

translate.py  job -> TRL config (pure; the hub uses it for plan and check)
data.py       the data layer's records and examples -> the datasets TRL's trainers take
train.py      builds the tokenizer, model, data, rewards and trainer, and runs it
"""
