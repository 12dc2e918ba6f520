"""The native engine's GRPO family: losses (loss.py), advantages (advantages.py), the KV-cache sampler
(rollout.py), prompts and rewards (prompts.py) and the loop (train.py)."""
