"""The `nanogpt` backend: a checkout of karpathy/nanoGPT, driven by a generated config file, never modified.

runner.py     the Runner: check (the job, the checkout), prepare (the command line); no torch
translate.py  job -> nanoGPT's config file, every key with the type of nanoGPT's default (pure)
child.py      `python -m trainhub.runners.nanogpt.child`: the driver (data, config, nanoGPT's train.py,
              its stdout -> rows, its checkpoints, the final export)
logparse.py   nanoGPT's stdout lines -> metric rows
snapshots.py  nanoGPT's ckpt.pt -> trainhub checkpoints (engine/checkpoint.py commit_checkpoint)
source.py     where a nanoGPT checkpoint and its tokenizer are, for model.path
"""
