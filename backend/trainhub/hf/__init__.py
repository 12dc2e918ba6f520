"""The one place trainhub touches a Hugging Face Trainer from the inside (STYLE.md item 6).

    callback.py   MetricsCallback: the common metric rows from a Trainer's events (public callback API;
                  used by the trl, unsloth and llamafactory children)
    deferred.py   the log one step late, so a row every step does not drain the GPU
    nonfinite.py  train.on_nonfinite: skip (a bad step's update dropped on the device) and the tests'
                  NaN injection
    tokens.py     the trained-token count for a trainer that reports none (Unsloth's SFTTrainer)
    flops.py      the Trainer's FLOPs count taken once instead of once per micro-batch
    guard.py      how every patch above is guarded: TESTED versions, TOUCHES internals, REQUIRED or not

Every patch is applied per instance (the trainer object, its optimizer), never to a class, and stands
behind hf/guard.py; tests/unit/test_hf_guards.py fails, naming what moved, when an upstream internal a
patch relies on is no longer where it was. Nothing here is imported by the hub: only the children.
"""
