"""The `llamafactory` backend: LLaMA-Factory's `run_exp`, in an environment of its own.

runner.py     the Runner: check, prepare (writes the data and the config), plan (the hub's side)
translate.py  job -> LLaMA-Factory's training arguments (pure)
child.py      `<llamafactory env python> -m trainhub.runners.llamafactory.child`: run_exp with trainhub's
              metrics callback
"""
